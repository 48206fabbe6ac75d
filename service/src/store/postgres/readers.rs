//! The read of one order, pipelined: a few tokio-postgres connections shared by every request.
//!
//! sqlx lends a connection to one query at a time, so each concurrent read wakes a backend of
//! its own for every query. A `tokio_postgres::Client` takes queries from any number of tasks
//! at once and writes them to its connection back to back, so a backend reads the queries of
//! several requests per wake-up and answers them in order. On a CPU shared by the service, the
//! database and its backends, those wake-ups (task switches) cost as much as the queries.
//!
//! Each connection has the statement prepared once. A connection that ends (the server
//! restarted, the session was terminated, a network error) is replaced by the next request
//! that comes to it, and a read whose connection ended under it is tried once more on a new
//! one; a connection past `MAX_LIFETIME` is replaced too. New connections use the connect settings
//! current at that moment (`set_connect`, when the database URL changes).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tokio::sync::{Mutex, Semaphore};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::MAX_LIFETIME;
use crate::store::StoreError;

/// How to open a reader connection, from one database URL.
pub struct Connect {
    config: Config,
    tls: MakeRustlsConnect,
}

/// Why a database URL cannot serve the readers; never contains the URL.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Url(tokio_postgres::Error),
    #[error("the URL's {0} (a client certificate) is not supported")]
    ClientCertificate(String),
    #[error("cannot read sslrootcert: {0}")]
    RootCert(std::io::Error),
    #[error("no usable certificate authority: {0}")]
    Roots(rustls::Error),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

impl Connect {
    /// The settings of `url` as sqlx reads them (`options`, parsed from it): host, port,
    /// user, password, database and the TLS mode, with the same certificate authorities
    /// (`roots_pem` when the URL names no `sslrootcert`), plus the schema and statement
    /// timeout every session starts with (`session_options`, `-c name=value …`).
    pub fn new(
        url: &SecretString,
        options: &PgConnectOptions,
        roots_pem: &[u8],
        session_options: &str,
    ) -> Result<Connect, ConnectError> {
        let (url, root_cert) = split_url(url.expose_secret())?;
        let mut config: Config = url.parse().map_err(ConnectError::Url)?;
        let session_options = match config.get_options() {
            Some(own) => format!("{own} {session_options}"),
            None => session_options.to_owned(),
        };
        config
            .options(session_options)
            .application_name("order-service");
        let (mode, check) = match options.get_ssl_mode() {
            PgSslMode::Disable => (SslMode::Disable, Check::Nothing),
            PgSslMode::Allow | PgSslMode::Prefer => (SslMode::Prefer, Check::Nothing),
            PgSslMode::Require => (SslMode::Require, Check::Nothing),
            PgSslMode::VerifyCa => (SslMode::Require, Check::Authority),
            PgSslMode::VerifyFull => (SslMode::Require, Check::AuthorityAndHost),
        };
        config.ssl_mode(mode);
        let pem = match root_cert {
            Some(path) => std::fs::read(path).map_err(ConnectError::RootCert)?,
            None => roots_pem.to_vec(),
        };
        Ok(Connect {
            config,
            tls: MakeRustlsConnect::new(tls_config(&pem, check)?),
        })
    }
}

/// The URL without the parameters only sqlx or this module read, and the `sslrootcert` path
/// it names. The TLS mode comes from sqlx's reading of the URL.
fn split_url(url: &str) -> Result<(String, Option<String>), ConnectError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut kept = Vec::new();
    let mut root_cert = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslrootcert" => {
                let path = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                root_cert = Some(path.into_owned());
            }
            "sslcert" | "sslkey" => return Err(ConnectError::ClientCertificate(key.to_owned())),
            // Known to tokio-postgres and meaning the same there.
            "user"
            | "password"
            | "dbname"
            | "options"
            | "application_name"
            | "host"
            | "hostaddr"
            | "port"
            | "connect_timeout"
            | "tcp_user_timeout"
            | "keepalives"
            | "keepalives_idle"
            | "keepalives_interval"
            | "keepalives_retries"
            | "target_session_attrs"
            | "channel_binding"
            | "load_balance_hosts" => kept.push(pair),
            // sslmode (read by sqlx, above) and what only sqlx knows (statement-cache-capacity).
            _ => {}
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, root_cert))
}

/// What a TLS connection checks of the server's certificate, as sqlx does for each `sslmode`.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// `prefer`, `require`: encryption only.
    Nothing,
    /// `verify-ca`: issued by a trusted authority, for whichever host.
    Authority,
    /// `verify-full`: issued by a trusted authority, for the host connected to.
    AuthorityAndHost,
}

/// Trusted: the Mozilla roots (as sqlx's rustls set-up) and `pem`'s certificates.
fn tls_config(pem: &[u8], check: Check) -> Result<rustls::ClientConfig, ConnectError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|error| ConnectError::Tls(error.to_string()))?;
        roots
            .add(cert)
            .map_err(|error| ConnectError::Tls(error.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| ConnectError::Tls(error.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ConnectError::Roots)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier { webpki, check }))
        .with_no_client_auth();
    Ok(config)
}

/// rustls's own verification, relaxed as the `sslmode` allows.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    check: Check,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = || {
            self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )
        };
        match self.check {
            Check::Nothing => Ok(ServerCertVerified::assertion()),
            Check::AuthorityAndHost => verified(),
            Check::Authority => match verified() {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The shared reader connections, and the bound on reads in flight.
pub struct Readers {
    slots: Box<[Slot]>,
    next: AtomicUsize,
    connect: RwLock<Arc<Connect>>,
    statement: &'static str,
    /// `DB_MAX_CONNECTIONS` reads at once, as the pool serves as many operations; a read that
    /// waits longer than `wait` for its turn is refused (503), as a pooled operation is.
    in_flight: Semaphore,
    wait: Duration,
    connect_timeout: Duration,
}

/// One shared connection; `opening` makes the requests that find it gone wait for one new
/// connection instead of each opening its own.
struct Slot {
    current: RwLock<Option<Arc<Reader>>>,
    opening: Mutex<()>,
}

struct Reader {
    client: Client,
    statement: Statement,
    opened: Instant,
}

impl Reader {
    fn usable(&self) -> bool {
        !self.client.is_closed() && self.opened.elapsed() < MAX_LIFETIME
    }
}

impl Readers {
    /// `connections` shared connections (opened on first use) for `statement`, whose one
    /// parameter is an `int8`.
    pub fn new(
        connect: Connect,
        statement: &'static str,
        connections: usize,
        max_in_flight: usize,
        wait: Duration,
        connect_timeout: Duration,
    ) -> Readers {
        Readers {
            slots: (0..connections.max(1))
                .map(|_| Slot {
                    current: RwLock::new(None),
                    opening: Mutex::new(()),
                })
                .collect(),
            next: AtomicUsize::new(0),
            connect: RwLock::new(Arc::new(connect)),
            statement,
            in_flight: Semaphore::new(max_in_flight.max(1)),
            wait,
            connect_timeout,
        }
    }

    /// Connections opened from now on use `connect`; open ones keep serving (PostgreSQL keeps
    /// sessions when a password changes) until they end or reach `MAX_LIFETIME`.
    pub fn set_connect(&self, connect: Connect) {
        *self.connect.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(connect);
    }

    /// The statement's row for `param`, if any.
    pub async fn query(&self, param: i64) -> Result<Option<Row>, StoreError> {
        let _turn = tokio::time::timeout(self.wait, self.in_flight.acquire())
            .await
            .map_err(|_| {
                StoreError::Unavailable(
                    "reads stayed in flight for longer than DB_POOL_WAIT_TIMEOUT_MS".into(),
                )
            })?
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let reader = self.reader(slot).await?;
        match reader.client.query_opt(&reader.statement, &[&param]).await {
            // The session ended under the query (a restart, a terminated session): a read is
            // safe to repeat, on a new connection.
            Err(error) if ends_session(&error) || reader.client.is_closed() => {
                slot.discard(&reader);
                let reader = self.reader(slot).await?;
                reader
                    .client
                    .query_opt(&reader.statement, &[&param])
                    .await
                    .map_err(classify)
            }
            result => result.map_err(classify),
        }
    }

    /// The slot's connection, opened (again) when there is none or it ended.
    async fn reader(&self, slot: &Slot) -> Result<Arc<Reader>, StoreError> {
        if let Some(reader) = slot.usable() {
            return Ok(reader);
        }
        let _opening = slot.opening.lock().await;
        // Another request may have opened it while this one waited.
        if let Some(reader) = slot.usable() {
            return Ok(reader);
        }
        match self.open().await {
            Ok(reader) => {
                let reader = Arc::new(reader);
                *slot.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&reader));
                Ok(reader)
            }
            // Another connection still serves (one session ended while the password is being
            // rotated, say): the read goes there, and this slot tries again next time.
            Err(error) => self.slots.iter().find_map(Slot::usable).ok_or(error),
        }
    }

    /// Opens every connection, so that reads never wait for one on a fresh store, and a
    /// database that refuses them stops start-up as a refused pool does.
    pub async fn open_all(&self) -> Result<(), String> {
        for slot in self.slots.iter() {
            let reader = self.open().await.map_err(|error| match error {
                StoreError::Unavailable(cause) | StoreError::Internal(cause) => cause.to_string(),
                other => other.to_string(),
            })?;
            *slot.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(reader));
        }
        Ok(())
    }

    /// A new connection with the statement prepared, within `DB_ACQUIRE_TIMEOUT_MS`.
    async fn open(&self) -> Result<Reader, StoreError> {
        let connect = Arc::clone(&self.connect.read().unwrap_or_else(PoisonError::into_inner));
        let opening = async {
            let (client, connection) = connect.config.connect(connect.tls.clone()).await?;
            // Runs until the client is dropped or the connection fails; either way the client
            // reports itself closed and the slot opens a new one.
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "a reader connection ended");
                }
            });
            let statement = client.prepare(self.statement).await?;
            Ok(Reader {
                client,
                statement,
                opened: Instant::now(),
            })
        };
        match tokio::time::timeout(self.connect_timeout, opening).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(StoreError::Unavailable(
                "opening a database connection took longer than DB_ACQUIRE_TIMEOUT_MS".into(),
            )),
        }
    }
}

impl Slot {
    fn usable(&self) -> Option<Arc<Reader>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().filter(|reader| reader.usable()).cloned()
    }

    /// Forgets `reader` (unless it was replaced already): its session ended, although its
    /// client may not report itself closed yet.
    fn discard(&self, reader: &Arc<Reader>) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|now| Arc::ptr_eq(now, reader)) {
            *current = None;
        }
    }
}

/// An error the server ends the session with (severity FATAL or PANIC), as every session
/// gets when it is terminated or the server shuts down.
fn ends_session(error: &tokio_postgres::Error) -> bool {
    error
        .as_db_error()
        .is_some_and(|db| matches!(db.severity(), "FATAL" | "PANIC"))
}

/// Errors the server sent are classified by their SQLSTATE, as the pool's; any other error of
/// a query or a connection (closed, I/O, TLS) means the database is out of reach: 503.
fn classify(error: tokio_postgres::Error) -> StoreError {
    let transient = match error.code() {
        Some(code) => super::is_transient_sqlstate(code.code()),
        None => true,
    };
    if transient {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Internal(Box::new(error))
    }
}

/// Whether the database rejected the credentials (SQLSTATE class 28).
pub fn is_auth_failure(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| code.code().starts_with("28"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_keeps_what_tokio_postgres_reads_and_hands_over_the_root_certificate() {
        let (url, root) = split_url(
            "postgres://u:p@h:5432/db?sslmode=verify-full&statement-cache-capacity=10\
             &sslrootcert=%2Ftmp%2Fca.pem&application_name=x&connect_timeout=3",
        )
        .expect("usable");
        assert_eq!(
            url,
            "postgres://u:p@h:5432/db?application_name=x&connect_timeout=3"
        );
        assert_eq!(root.as_deref(), Some("/tmp/ca.pem"));
        let (url, root) = split_url("postgres://u@h/db").expect("usable");
        assert_eq!((url.as_str(), root), ("postgres://u@h/db", None));
    }

    #[test]
    fn a_client_certificate_is_refused_by_name() {
        let error = split_url("postgres://u@h/db?sslcert=%2Fc.pem").expect_err("refused");
        assert!(error.to_string().contains("sslcert"), "{error}");
    }
}
