//! Every setting the service reads, from the environment (and `.env` when present).
//!
//! Parsing is hand-written on purpose: each bad value must stop start-up with exactly one
//! line naming the variable and what it accepts, and secret values must never be echoed.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

/// A setting that could not be used: the one line start-up prints before exiting.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            var,
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Postgres,
}

/// Database settings; the store defines them, this module fills them in.
pub use crate::store::DatabaseConfig;

/// AWS Secrets Manager settings; `None` in [`Config::secrets`] when disabled.
#[derive(Debug, Clone)]
pub struct SecretsConfig {
    pub secret_name: String,
    pub region: Option<String>,
    pub refresh_interval: Duration,
    /// `SECRETS_TIMEOUT_MS`: the longest one Secrets Manager call may take, retries included.
    pub call_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `ENVIRONMENT`: shown in the welcome message (`local` when unset). Only an explicit
    /// `ENVIRONMENT=local` opens writes when no key is set.
    pub environment: String,
    /// Whether `ENVIRONMENT` was set, rather than defaulted to `local`.
    pub environment_explicit: bool,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
    pub enable_metrics: bool,
    pub host: IpAddr,
    pub port: u16,
    pub metrics_port: u16,
    pub store: StoreKind,
    pub seed_sample_data: bool,
    /// `MEMORY_MAX_ORDERS`: the memory store refuses creates beyond this many orders.
    pub memory_max_orders: usize,
    /// `IDEMPOTENCY_TTL_SECONDS`: how long an `Idempotency-Key` replays its first response.
    pub idempotency_ttl: Duration,
    pub database: DatabaseConfig,
    pub secrets: Option<SecretsConfig>,
    /// `API_KEYS`: bearer keys for writes, merged with the runtime secret's `api_keys`.
    pub api_keys: Vec<SecretString>,
    /// `PUBLIC_READS`: `GET /orders…` answer without a key. On by default only for an
    /// explicit `ENVIRONMENT=local`; elsewhere for clients of the earlier version that never
    /// send a key, at the price of every order being readable by whoever reaches the service.
    pub public_reads: bool,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    /// `PAGE_MAX_BYTES`: the most JSON one page of `GET /orders` carries (it then carries
    /// fewer orders than `limit`); unset, the shell's default ([`CONTAINER_PAGE_MAX_BYTES`],
    /// [`LAMBDA_PAGE_MAX_BYTES`]).
    pub page_max_bytes: Option<usize>,
    /// `COMPRESSION_MIN_BYTES`: answers smaller than this are sent uncompressed whatever the
    /// client accepts.
    pub compression_min_bytes: u16,
    pub shutdown_drain: Duration,
    pub shutdown_grace: Duration,
    /// Connection limits of both ports (container only).
    pub connections: ConnectionLimits,
}

/// `PAGE_MAX_BYTES` in the container. A pod's memory limit is 256 MiB; up to
/// `MAX_IN_FLIGHT_REQUESTS` (32) pages are assembled at once, each holding its orders and their
/// JSON (about twice the page from the PostgreSQL store), so 2 MiB pages take at most half the
/// pod. A page of 2 MiB is still a few dozen orders of the largest size.
pub const CONTAINER_PAGE_MAX_BYTES: usize = 2 * 1024 * 1024;

/// `PAGE_MAX_BYTES` on Lambda: the answer must fit the smallest door, an ALB, which takes at
/// most 1 MB of Lambda response (the whole JSON envelope). The body travels as a JSON string,
/// where escaping at most doubles it (only `"` and `\` are escaped; orders hold no control
/// characters), and a compressed body as base64 (4/3 of a compressed body, which is never
/// much larger than the JSON): 2 × 480 000 leaves 40 000 bytes for the status, the headers
/// and the envelope.
pub const LAMBDA_PAGE_MAX_BYTES: usize = 480_000;

/// `COMPRESSION_MIN_BYTES` unless set: an answer that fits one TCP segment (1 460 bytes of
/// payload on Ethernet, less the HTTP head) saves no packet and no round trip by being
/// compressed, so a single order of typical size pays nothing for it.
pub const DEFAULT_COMPRESSION_MIN_BYTES: u16 = 1_400;

/// `QUEUE_WAIT_TIMEOUT_MS` unless set: about what a whole unloaded read takes (a page of 20
/// from PostgreSQL: p50 0.8 ms, p99 1-1.9 ms in bench/overload.sh). It applies only while the
/// pod is refusing anyway (a refusal in the last second or two, `admission.rs`): then a
/// request left unread that long met a CPU already behind by a whole answer, and serving it
/// would make every request behind it as late, so the fresh ones are served instead. Measured
/// there at 4x capacity: 1 ms served 0.91x with p99 3.5x the unloaded p99; 3 ms 0.84x with
/// 5.1x; no target (the limit alone) 0.80x with 33.7x.
pub const DEFAULT_QUEUE_WAIT_TIMEOUT_MS: u64 = 1;

/// How long a client may take and how much it may ask for at once (container ports).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// `HEADER_READ_TIMEOUT_MS`: a new request's header must be complete this long after its
    /// first byte (or after accept, for a connection's first request).
    pub header_read_timeout: Duration,
    /// `KEEP_ALIVE_TIMEOUT_SECONDS`: an idle keep-alive connection is closed after this long;
    /// longer than the load balancer's idle timeout, so the balancer always closes first.
    pub keep_alive_timeout: Duration,
    /// `MAX_IN_FLIGHT_REQUESTS`: the ceiling of API requests in flight; above the current
    /// limit (this, or below it the adaptive one) the API answers 503 with `Retry-After` at once.
    pub max_in_flight: usize,
    /// `ADAPTIVE_CONCURRENCY`: the limit follows measured latency (`true`, the default) or
    /// stays at `MAX_IN_FLIGHT_REQUESTS`.
    pub adaptive_concurrency: bool,
    /// `QUEUE_WAIT_TIMEOUT_MS`: an API request whose bytes waited longer than this in its
    /// socket before the service read them is answered 503 with `Retry-After`.
    pub max_queue_wait: Duration,
    /// `WRITE_TIMEOUT_MS`: a connection whose answer makes no progress this long (the client
    /// stopped reading) is closed, and the answer it held is freed.
    pub write_timeout: Duration,
    /// `MAX_CONNECTIONS`: open connections per port, idle keep-alive ones included; beyond it
    /// new connections wait in the kernel's listen backlog until one closes.
    pub max_connections: usize,
    /// `MAX_REQUEST_HEAD_BYTES`: a request line and headers larger than this get 431.
    pub max_request_head_bytes: usize,
}

impl Config {
    /// Reads the process environment, after loading `.env` when one exists (the environment wins).
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is the normal case; a malformed one is worth a clear error.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(ConfigError::new(".env", dotenv_problem(&e))),
        }
        Self::from_os_vars(std::env::vars_os())
    }

    /// Parses variables as the OS hands them over. A value that is not UTF-8 stops start-up
    /// naming the variable when the service reads it, and is ignored otherwise.
    pub fn from_os_vars(
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Self, ConfigError> {
        let mut text = HashMap::new();
        let mut not_utf8 = HashSet::new();
        for (name, value) in vars {
            // A name that is not UTF-8 cannot be one the service reads.
            let Ok(name) = name.into_string() else {
                continue;
            };
            match value.into_string() {
                Ok(value) => {
                    text.insert(name, value);
                }
                Err(_) => {
                    not_utf8.insert(name);
                }
            }
        }
        Self::from_parts(&text, &not_utf8)
    }

    /// Parses a given set of variables: what tests and `check-config` use.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_parts(vars, &HashSet::new())
    }

    fn from_parts(
        vars: &HashMap<String, String>,
        not_utf8: &HashSet<String>,
    ) -> Result<Self, ConfigError> {
        let env = Env {
            vars,
            not_utf8,
            unreadable: Cell::new(None),
        };
        let result = Self::read(&env);
        // The unreadable variable is the first problem to report: the others may follow from it.
        match env.unreadable.get() {
            Some(var) => Err(ConfigError::new(
                var,
                "the value is not valid UTF-8 (not shown)",
            )),
            None => result,
        }
    }

    fn read(env: &Env) -> Result<Self, ConfigError> {
        let environment_explicit = env.optional("ENVIRONMENT").is_some();
        let environment = env.string("ENVIRONMENT", "local");
        if environment.is_empty()
            || !environment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ConfigError::new(
                "ENVIRONMENT",
                "expected a lowercase name of a-z, 0-9 and '-' (e.g. local, staging, production)",
            ));
        }
        let default_format = if environment == "local" {
            "text"
        } else {
            "json"
        };
        let log_format = match env.string("LOG_FORMAT", default_format).as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(ConfigError::new("LOG_FORMAT", "expected text or json")),
        };
        let log_level = env
            .string("LOG_LEVEL", "info")
            .parse::<tracing::Level>()
            .map_err(|_| {
                ConfigError::new("LOG_LEVEL", "expected trace, debug, info, warn or error")
            })?;

        let port = env.parse("PORT", 8000_u16, "a TCP port (0 picks a free one)", |_| {
            true
        })?;
        let metrics_port = env.parse(
            "METRICS_PORT",
            9090_u16,
            "a TCP port (0 picks a free one)",
            |_| true,
        )?;
        if port == metrics_port && port != 0 {
            return Err(ConfigError::new("METRICS_PORT", "must differ from PORT"));
        }

        let store = match env.string("STORE", "memory").as_str() {
            "memory" => StoreKind::Memory,
            "postgres" => StoreKind::Postgres,
            _ => return Err(ConfigError::new("STORE", "expected memory or postgres")),
        };
        let seed_default = store == StoreKind::Memory;
        let schema = env.string("DB_SCHEMA", "public");
        if !crate::store::is_schema_name(&schema) {
            return Err(ConfigError::new(
                "DB_SCHEMA",
                "expected a lowercase SQL identifier ([a-z_][a-z0-9_]*, at most 63 characters)",
            ));
        }
        let database = DatabaseConfig {
            url: env.secret("DATABASE_URL"),
            schema,
            max_connections: env.parse("DB_MAX_CONNECTIONS", 10_u32, "a number 1-1000", |n| {
                (1..=1000).contains(n)
            })?,
            // 50 unloaded round trips (about 1 ms each) and a 200th of REQUEST_TIMEOUT_MS: a
            // request that waited this long met a pool busy for that whole time, not a burst,
            // and waiting on would answer it after its client has likely given up.
            pool_wait_timeout: env.millis("DB_POOL_WAIT_TIMEOUT_MS", 50)?,
            connect_timeout: env.millis("DB_ACQUIRE_TIMEOUT_MS", 2000)?,
            statement_timeout: env.millis("DB_STATEMENT_TIMEOUT_MS", 5000)?,
            ca_bundle: match env.optional("DB_CA_BUNDLE") {
                None => None,
                Some(path) => Some(read_ca_bundle(&path)?),
            },
        };

        let secrets = if env.bool("SECRETS_MANAGER_ENABLED", false)? {
            let secret_name = env.string("AWS_SECRET_NAME", "");
            if secret_name.is_empty() {
                return Err(ConfigError::new(
                    "AWS_SECRET_NAME",
                    "required when SECRETS_MANAGER_ENABLED=true (a secret name or ARN)",
                ));
            }
            Some(SecretsConfig {
                secret_name,
                region: env.optional("AWS_REGION"),
                refresh_interval: Duration::from_secs(env.parse(
                    "SECRET_REFRESH_SECONDS",
                    300_u64,
                    "a number of seconds > 0",
                    |s| *s > 0,
                )?),
                call_timeout: env.millis("SECRETS_TIMEOUT_MS", 3_000)?,
            })
        } else {
            None
        };

        let config = Config {
            log_level,
            log_format,
            enable_metrics: env.bool("ENABLE_METRICS", true)?,
            host: env.parse("HOST", IpAddr::from([0, 0, 0, 0]), "an IP address", |_| {
                true
            })?,
            port,
            metrics_port,
            store,
            seed_sample_data: env.bool("SEED_SAMPLE_DATA", seed_default)?,
            memory_max_orders: env.parse(
                "MEMORY_MAX_ORDERS",
                crate::store::DEFAULT_MAX_ORDERS,
                "a number of orders > 0",
                |n| *n > 0,
            )?,
            idempotency_ttl: Duration::from_secs(env.parse(
                "IDEMPOTENCY_TTL_SECONDS",
                crate::store::DEFAULT_IDEMPOTENCY_TTL.as_secs(),
                "a number of seconds > 0",
                |s| *s > 0,
            )?),
            database,
            secrets,
            api_keys: env
                .optional("API_KEYS")
                .map(|keys| parse_api_keys(&keys))
                .unwrap_or_default(),
            public_reads: env.bool(
                "PUBLIC_READS",
                environment_explicit && environment == "local",
            )?,
            request_timeout: env.millis("REQUEST_TIMEOUT_MS", 10_000)?,
            body_limit_bytes: env
                .parse("BODY_LIMIT_BYTES", 65_536_usize, "bytes > 0", |n| *n > 0)?,
            page_max_bytes: env
                .optional("PAGE_MAX_BYTES")
                .map(|_| {
                    env.parse("PAGE_MAX_BYTES", 0_usize, "bytes 1024-67108864", |n| {
                        (1_024..=67_108_864).contains(n)
                    })
                })
                .transpose()?,
            compression_min_bytes: env.parse(
                "COMPRESSION_MIN_BYTES",
                DEFAULT_COMPRESSION_MIN_BYTES,
                "bytes 0-65535",
                |_| true,
            )?,
            shutdown_drain: Duration::from_secs(env.parse(
                "SHUTDOWN_DRAIN_SECONDS",
                5_u64,
                "a number of seconds >= 0",
                |_| true,
            )?),
            shutdown_grace: Duration::from_secs(env.parse(
                "SHUTDOWN_GRACE_SECONDS",
                20_u64,
                "a number of seconds > 0",
                |s| *s > 0,
            )?),
            connections: ConnectionLimits {
                header_read_timeout: env.millis("HEADER_READ_TIMEOUT_MS", 5_000)?,
                keep_alive_timeout: Duration::from_secs(env.parse(
                    "KEEP_ALIVE_TIMEOUT_SECONDS",
                    75_u64,
                    "a number of seconds > 0",
                    |s| *s > 0,
                )?),
                max_in_flight: env.parse(
                    "MAX_IN_FLIGHT_REQUESTS",
                    32_usize,
                    "a number 1-100000",
                    |n| (1..=100_000).contains(n),
                )?,
                adaptive_concurrency: env.bool("ADAPTIVE_CONCURRENCY", true)?,
                max_queue_wait: env
                    .millis("QUEUE_WAIT_TIMEOUT_MS", DEFAULT_QUEUE_WAIT_TIMEOUT_MS)?,
                write_timeout: env.millis("WRITE_TIMEOUT_MS", 30_000)?,
                max_connections: env.parse(
                    "MAX_CONNECTIONS",
                    512_usize,
                    "a number 1-100000",
                    |n| (1..=100_000).contains(n),
                )?,
                // hyper's read buffer cannot be smaller than 8 KiB.
                max_request_head_bytes: env.parse(
                    "MAX_REQUEST_HEAD_BYTES",
                    16_384_usize,
                    "bytes 8192-1048576",
                    |n| (8_192..=1_048_576).contains(n),
                )?,
            },
            environment,
            environment_explicit,
        };
        Ok(config)
    }

    /// Writes are open without a key only on a developer's machine, and only when it says so:
    /// a deployment that forgot `ENVIRONMENT` must not accept anonymous writes.
    pub fn is_local(&self) -> bool {
        self.environment == "local" && self.environment_explicit
    }
}

/// Splits a comma-separated key list, dropping blanks.
pub fn parse_api_keys(keys: &str) -> Vec<SecretString> {
    keys.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| SecretString::from(k.to_owned()))
        .collect()
}

/// A PEM file with at least one certificate.
fn read_ca_bundle(path: &str) -> Result<Arc<[u8]>, ConfigError> {
    let pem = std::fs::read(path).map_err(|error| {
        ConfigError::new("DB_CA_BUNDLE", format!("cannot read {path:?}: {error}"))
    })?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(ConfigError::new(
            "DB_CA_BUNDLE",
            format!("expected PEM certificates in {path:?}"),
        ));
    }
    Ok(Arc::from(pem))
}

/// What went wrong in `.env`, without quoting it: the parser's own message repeats the whole
/// line, which may hold a password.
fn dotenv_problem(error: &dotenvy::Error) -> String {
    match error {
        dotenvy::Error::LineParse(line, index) => {
            // The parser does not say which line; find it in ./.env when that is the file.
            let number = std::fs::read_to_string(".env").ok().and_then(|text| {
                text.lines()
                    .position(|l| l.trim_end() == line.trim_end())
                    .map(|n| n + 1)
            });
            let place = number.map_or(String::new(), |n| format!("line {n}, "));
            format!(
                "cannot parse {place}character {}; the line is not shown, it may hold a secret",
                index + 1
            )
        }
        dotenvy::Error::Io(e) => format!("cannot be read: {}", e.kind()),
        _ => "cannot be loaded (a value is not valid UTF-8)".to_owned(),
    }
}

/// Typed access to a variable map; empty values count as unset. A variable whose value is
/// not UTF-8 reads as unset and is remembered, so that start-up stops naming it.
struct Env<'a> {
    vars: &'a HashMap<String, String>,
    not_utf8: &'a HashSet<String>,
    unreadable: Cell<Option<&'static str>>,
}

impl Env<'_> {
    fn optional(&self, var: &'static str) -> Option<String> {
        if self.not_utf8.contains(var) && self.unreadable.get().is_none() {
            self.unreadable.set(Some(var));
        }
        self.vars
            .get(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn string(&self, var: &'static str, default: &str) -> String {
        self.optional(var).unwrap_or_else(|| default.to_owned())
    }

    fn secret(&self, var: &'static str) -> Option<SecretString> {
        self.optional(var).map(SecretString::from)
    }

    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self
            .optional(var)
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(_) => Err(ConfigError::new(var, "expected true or false")),
        }
    }

    fn parse<T: FromStr>(
        &self,
        var: &'static str,
        default: T,
        accepts: &str,
        valid: impl Fn(&T) -> bool,
    ) -> Result<T, ConfigError> {
        let Some(raw) = self.optional(var) else {
            return Ok(default);
        };
        match raw.parse::<T>() {
            Ok(value) if valid(&value) => Ok(value),
            _ => Err(ConfigError::new(
                var,
                format!("expected {accepts}, got {raw:?}"),
            )),
        }
    }

    fn millis(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.parse(var, default, "milliseconds > 0", |ms| *ms > 0)
            .map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(&vars)
    }

    #[test]
    fn defaults_serve_locally_with_sample_data() {
        let config = parse(&[]).expect("defaults are valid");
        assert_eq!(config.environment, "local");
        assert_eq!((config.port, config.metrics_port), (8000, 9090));
        assert_eq!(config.store, StoreKind::Memory);
        assert!(config.seed_sample_data);
        assert_eq!(config.log_format, LogFormat::Text);
        assert!(config.secrets.is_none());
        assert_eq!(config.body_limit_bytes, 65_536);
        assert_eq!(config.page_max_bytes, None);
        assert_eq!(config.compression_min_bytes, 1_400);
    }

    #[test]
    fn page_and_compression_sizes_are_read_and_bounded() {
        let config =
            parse(&[("PAGE_MAX_BYTES", "65536"), ("COMPRESSION_MIN_BYTES", "0")]).expect("valid");
        assert_eq!(config.page_max_bytes, Some(65_536));
        assert_eq!(config.compression_min_bytes, 0);
        for (var, value) in [
            ("PAGE_MAX_BYTES", "100"),
            ("PAGE_MAX_BYTES", "100000000"),
            ("COMPRESSION_MIN_BYTES", "65536"),
            ("COMPRESSION_MIN_BYTES", "-1"),
        ] {
            let err = parse(&[(var, value)]).expect_err(var).to_string();
            assert!(
                err.starts_with(&format!("invalid configuration: {var}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn non_local_environments_log_json_and_postgres_does_not_seed() {
        let config = parse(&[("ENVIRONMENT", "staging"), ("STORE", "postgres")]).expect("valid");
        assert_eq!(config.log_format, LogFormat::Json);
        assert!(!config.seed_sample_data);
    }

    #[test]
    fn bad_values_name_the_variable_in_one_line() {
        for (var, value) in [
            ("PORT", "eighty"),
            ("PORT", "70000"),
            ("METRICS_PORT", "8000"),
            ("STORE", "redis"),
            ("LOG_LEVEL", "loud"),
            ("ENABLE_METRICS", "maybe"),
            ("DB_SCHEMA", "Robert'); DROP"),
            ("REQUEST_TIMEOUT_MS", "-5"),
            ("ENVIRONMENT", "Prod"),
        ] {
            let err = parse(&[(var, value)]).expect_err(var).to_string();
            assert!(
                err.starts_with(&format!("invalid configuration: {var}: ")),
                "{err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn only_an_explicit_local_environment_opens_writes() {
        let unset = parse(&[]).expect("valid");
        assert_eq!(unset.environment, "local");
        assert!(
            !unset.is_local(),
            "a forgotten ENVIRONMENT must not open writes"
        );
        assert!(parse(&[("ENVIRONMENT", "local")])
            .expect("valid")
            .is_local());
        assert!(!parse(&[("ENVIRONMENT", "staging")])
            .expect("valid")
            .is_local());
    }

    #[test]
    fn a_value_that_is_not_utf8_is_named_not_a_panic() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b's', 0xff, b'x']);
        let err = Config::from_os_vars([
            ("AWS_SECRET_NAME".into(), bad.clone()),
            ("SECRETS_MANAGER_ENABLED".into(), "true".into()),
        ])
        .expect_err("unreadable secret name");
        assert_eq!(err.var, "AWS_SECRET_NAME");
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
        // Variables the service does not read may hold anything.
        let config = Config::from_os_vars([
            ("UNRELATED".into(), bad.clone()),
            (OsString::from_vec(vec![0xfe]), bad),
            ("ENVIRONMENT".into(), "staging".into()),
        ])
        .expect("valid");
        assert_eq!(config.environment, "staging");
    }

    #[test]
    fn a_ca_bundle_must_be_a_readable_pem_file() {
        let err = parse(&[("DB_CA_BUNDLE", "/nonexistent/ca.pem")]).expect_err("missing");
        assert_eq!(err.var, "DB_CA_BUNDLE");
        assert!(err.problem.contains("cannot read"), "{}", err.problem);
        let not_pem = std::env::temp_dir().join(format!("not-pem-{}", std::process::id()));
        std::fs::write(&not_pem, "hello").expect("write");
        let err = parse(&[("DB_CA_BUNDLE", &not_pem.display().to_string())]).expect_err("not PEM");
        assert!(err.problem.contains("expected PEM"), "{}", err.problem);
        let _ = std::fs::remove_file(&not_pem);
    }

    #[test]
    fn secrets_manager_requires_a_secret_name() {
        let err = parse(&[("SECRETS_MANAGER_ENABLED", "true")]).expect_err("no name");
        assert_eq!(err.var, "AWS_SECRET_NAME");
        let config = parse(&[
            ("SECRETS_MANAGER_ENABLED", "true"),
            ("AWS_SECRET_NAME", "order-service/staging"),
        ])
        .expect("valid");
        let secrets = config.secrets.expect("enabled");
        assert_eq!(secrets.refresh_interval, Duration::from_secs(300));
    }

    #[test]
    fn reads_are_public_only_on_purpose_or_locally() {
        let public = |vars: &[(&str, &str)]| parse(vars).expect("valid").public_reads;
        assert!(!public(&[("ENVIRONMENT", "production")]));
        assert!(
            !public(&[]),
            "an unset ENVIRONMENT is not a developer's machine"
        );
        assert!(public(&[("ENVIRONMENT", "local")]));
        assert!(public(&[
            ("ENVIRONMENT", "production"),
            ("PUBLIC_READS", "true")
        ]));
        assert!(!public(&[
            ("ENVIRONMENT", "local"),
            ("PUBLIC_READS", "false")
        ]));
        let error = parse(&[("PUBLIC_READS", "maybe")]).expect_err("refused");
        assert!(error.to_string().contains("PUBLIC_READS"), "{error}");
    }

    #[test]
    fn api_keys_are_split_and_never_printed() {
        let config = parse(&[("API_KEYS", "alpha-key, beta-key,,")]).expect("valid");
        assert_eq!(config.api_keys.len(), 2);
        assert!(!format!("{config:?}").contains("alpha-key"));
    }
}
