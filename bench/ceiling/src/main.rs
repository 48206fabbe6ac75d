//! The ceilings the benchmarks compare the service with (bench/http.sh, bench/postgres.sh,
//! bench/server_instructions.sh): a server answering every request with the same JSON body,
//! built once at start, with nothing else on top (no layers, no logging).
//!
//!   bench-ceiling BODY_BYTES [hyper|axum|pg]   (or BODY_BYTES in the environment; HOST, PORT
//!                                               as the service; DATABASE_URL for `pg`)
//!
//! `hyper` (the default) is hyper 1 alone: the most any server on this machine can do. With
//! `BUSY_NANOS` set, it spins that long on every request before it answers: a bare server as
//! slow as a given one, to see what latency a server of that speed gets here whatever it does.
//! `axum` puts a bare axum router in front of the same body, served over the same hyper
//! connections: what the framework alone leaves of that, before the service adds anything.
//! `pg` is hyper 1 running `pgbench -S`'s statement once per request before it answers, each
//! HTTP connection on a PostgreSQL connection of its own (tokio-postgres, the statement
//! prepared once), against a database `pgbench -i` filled: the most any HTTP service that
//! reads PostgreSQL once per request can do beside `pgbench -S` on the same machine.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let size: usize = args
        .next()
        .or_else(|| std::env::var("BODY_BYTES").ok())
        .context("usage: bench-ceiling BODY_BYTES [hyper|axum|pg]")?
        .parse()
        .context("BODY_BYTES must be a byte count")?;
    let kind = args.next().unwrap_or_else(|| "hyper".to_owned());
    let host: IpAddr = env_or("HOST", "127.0.0.1")
        .parse()
        .context("HOST must be an IP address")?;
    let port: u16 = env_or("PORT", "8000")
        .parse()
        .context("PORT must be 1-65535")?;
    let busy = busy_time()?;

    let body = json_body(size);
    let listener = TcpListener::bind(SocketAddr::new(host, port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    println!(
        "{kind} listening on {} with a {}-byte body",
        listener.local_addr()?,
        body.len()
    );
    match kind.as_str() {
        "hyper" => serve_hyper(listener, body, busy).await,
        "axum" => serve_axum(listener, body).await,
        "pg" => serve_pg(listener, body).await,
        other => bail!("unknown ceiling {other:?}: hyper, axum or pg"),
    }
}

async fn serve_hyper(listener: TcpListener, body: Bytes, busy: Duration) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let body = body.clone();
        let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
            let body = body.clone();
            async move {
                spin(busy);
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(body))
            }
        });
        tokio::spawn(serve(stream, service));
    }
}

/// Every path the bench asks for (`/orders/{id}`, `/orders`, `/ready`), routed as the
/// service routes them, the id taken from the path.
async fn serve_axum(listener: TcpListener, body: Bytes) -> anyhow::Result<()> {
    let one = body.clone();
    let router = Router::new()
        .route(
            "/orders/{id}",
            get(move |axum::extract::Path(_id): axum::extract::Path<u64>| {
                let body = one.clone();
                async move { json(body) }
            }),
        )
        .route("/orders", get(move || async move { json(body) }))
        .route("/ready", get(|| async { "ready" }));
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream, TowerToHyperService::new(router.clone())));
    }
}

/// `pgbench -S`'s transaction: one account's balance, the account drawn at random.
const SELECT_BALANCE: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";

async fn serve_pg(listener: TcpListener, body: Bytes) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("pg needs DATABASE_URL")?;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .context("cannot connect to DATABASE_URL")?;
    tokio::spawn(connection);
    let accounts: i32 = client
        .query_one("SELECT count(*)::int FROM pgbench_accounts", &[])
        .await
        .context("no pgbench_accounts: run pgbench -i first")?
        .get(0);
    if accounts < 1 {
        bail!("pgbench_accounts is empty: run pgbench -i first");
    }
    drop(client);
    loop {
        let (stream, _) = listener.accept().await?;
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let select = client.prepare(SELECT_BALANCE).await?;
        let client = Arc::new(client);
        let body = body.clone();
        // xorshift: an account per request without a shared generator.
        let next = Arc::new(AtomicU32::new(stream_seed(&stream)));
        let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
            let (client, select, body, next) =
                (client.clone(), select.clone(), body.clone(), next.clone());
            async move {
                let mut x = next.load(Ordering::Relaxed);
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                next.store(x, Ordering::Relaxed);
                let aid = i32::try_from(x % accounts.unsigned_abs()).unwrap_or(0) + 1;
                let status = match client.query_one(&select, &[&aid]).await {
                    Ok(_) => hyper::StatusCode::OK,
                    Err(_) => hyper::StatusCode::SERVICE_UNAVAILABLE,
                };
                Response::builder()
                    .status(status)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(body))
            }
        });
        tokio::spawn(serve(stream, service));
    }
}

/// A nonzero seed per connection, from its client's port.
fn stream_seed(stream: &TcpStream) -> u32 {
    stream
        .peer_addr()
        .map_or(1, |peer| u32::from(peer.port()) | 1 << 16)
}

fn json(body: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn serve<S>(stream: TcpStream, service: S)
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // A client hanging up mid-request is normal under load; nothing to report.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// `BUSY_NANOS`: how long to spin on every request (zero when unset).
fn busy_time() -> anyhow::Result<Duration> {
    let nanos: u64 = env_or("BUSY_NANOS", "0")
        .parse()
        .context("BUSY_NANOS must be a count of nanoseconds")?;
    Ok(Duration::from_nanos(nanos))
}

/// Keeps the thread busy for `busy`, as work on the request would.
fn spin(busy: Duration) {
    if busy.is_zero() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < busy {
        std::hint::spin_loop();
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `{"pad":"xxx…"}` padded to exactly `size` bytes (or the smallest valid object when
/// `size` is below that).
fn json_body(size: usize) -> Bytes {
    const FRAME: &str = r#"{"pad":""}"#;
    let padding = "x".repeat(size.saturating_sub(FRAME.len()));
    Bytes::from(format!(r#"{{"pad":"{padding}"}}"#))
}
