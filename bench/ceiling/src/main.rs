//! The ceiling for bench/http.sh: hyper 1 with nothing on top (no router, no layers, no
//! logging), answering every request with the same JSON body, built once at start.
//!
//!   bench-ceiling BODY_BYTES      (or BODY_BYTES in the environment; HOST, PORT as the service)

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let size: usize = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("BODY_BYTES").ok())
        .context("usage: bench-ceiling BODY_BYTES")?
        .parse()
        .context("BODY_BYTES must be a byte count")?;
    let host: IpAddr = env_or("HOST", "127.0.0.1")
        .parse()
        .context("HOST must be an IP address")?;
    let port: u16 = env_or("PORT", "8000")
        .parse()
        .context("PORT must be 1-65535")?;

    let body = json_body(size);
    let listener = TcpListener::bind(SocketAddr::new(host, port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    println!(
        "listening on {} with a {}-byte body",
        listener.local_addr()?,
        body.len()
    );

    loop {
        let (stream, _) = listener.accept().await?;
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move {
                    Response::builder()
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Full::new(body))
                }
            });
            // A client hanging up mid-request is normal under load; nothing to report.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
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
