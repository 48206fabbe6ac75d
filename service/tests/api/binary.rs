//! The real container binary: ports, probes, metrics port, graceful shutdown.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::connections::read_response;
use crate::support::binary::Service;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test]
async fn serves_probes_on_the_api_port_and_metrics_on_its_own() {
    let service = Service::start(&[]);
    let http = client();
    let health = http
        .get(service.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), r#"{"status":"OK"}"#);
    assert_eq!(
        http.get(service.url("/ready"))
            .send()
            .await
            .expect("ready")
            .status(),
        200
    );
    http.get(service.url("/orders/1"))
        .send()
        .await
        .expect("order");

    let metrics_url = format!(
        "{}/metrics",
        service.metrics.as_deref().expect("metrics port")
    );
    let metrics = http.get(&metrics_url).send().await.expect("metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    for name in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_requests_in_flight",
        "orders_created_total",
        "secrets_refresh_total",
        "build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(text.contains(r#"route="/orders/{id}""#));
    let on_api_port = http
        .get(service.url("/metrics"))
        .send()
        .await
        .expect("api /metrics");
    assert_eq!(on_api_port.status(), 404);
}

#[tokio::test]
async fn metrics_port_is_closed_when_metrics_are_disabled() {
    // A port the service is told to use for metrics, free when it starts.
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
        .to_string();
    let service = Service::start(&[("ENABLE_METRICS", "false"), ("METRICS_PORT", &metrics_port)]);
    assert!(service.metrics.is_none());
    let health = client()
        .get(service.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let connect = TcpStream::connect(format!("127.0.0.1:{metrics_port}")).await;
    assert_eq!(
        connect.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "something listens on the metrics port"
    );
    let on_api_port = client()
        .get(service.url("/metrics"))
        .send()
        .await
        .expect("api /metrics");
    assert_eq!(on_api_port.status(), 404);
}

#[tokio::test]
async fn healthcheck_subcommand_reports_the_local_service() {
    let service = Service::start(&[]);
    let port = service.api.rsplit(':').next().expect("port").to_owned();
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
        .arg("healthcheck")
        .env_clear()
        .env("PORT", &port)
        .output()
        .expect("runs");
    assert!(ok.status.success(), "{ok:?}");
    drop(service);
    let down = std::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
        .arg("healthcheck")
        .env_clear()
        .env("PORT", &port)
        .output()
        .expect("runs");
    assert!(!down.status.success());
}

#[test]
fn bad_setting_stops_start_up_with_one_line() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
        .env_clear()
        .env("PORT", "eighty")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("invalid configuration: PORT: "),
        "{stderr}"
    );
}

/// A load balancer keeps sending until readiness fails; every request it sent must succeed,
/// and the process must exit 0 once in-flight work is done.
#[tokio::test]
async fn sigterm_drains_without_failing_a_request() {
    let mut service = Service::start(&[
        ("SHUTDOWN_DRAIN_SECONDS", "2"),
        ("SHUTDOWN_GRACE_SECONDS", "10"),
    ]);
    let http = client();
    let orders = service.url("/orders");
    let ready = service.url("/ready");

    let mut workers = Vec::new();
    for _ in 0..8 {
        let (http, orders, ready) = (http.clone(), orders.clone(), ready.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0_u32, Vec::new());
            loop {
                match http.get(&orders).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
                let still_ready = matches!(
                    http.get(&ready).send().await.map(|r| r.status().as_u16()),
                    Ok(200)
                );
                if !still_ready {
                    return (ok, failed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.terminate();

    let mut total = 0;
    for worker in workers {
        let (ok, failed) = worker.await.expect("worker");
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        total += ok;
    }
    assert!(total > 0);
    let status = service.wait(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    assert!(service.find_line("draining").is_some());
}

/// One request on a new connection, read until the server closes it (while draining, every
/// answer closes its connection); the error when the connection is refused or reset.
async fn ask_draining(addr: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: example\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut received))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "not closed in 30 s"))??;
    Ok(String::from_utf8_lossy(&received).to_ascii_lowercase())
}

/// Whether a log line containing `needle` appears within `limit`.
fn logged_within(service: &Service, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while service.find_line(needle).is_none() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// When the service wrote its first log line containing `needle`, by its own clock.
fn logged_at(service: &Service, needle: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let line = service
        .find_line(needle)
        .unwrap_or_else(|| panic!("no log line with {needle:?}: {:?}", service.logs()));
    let event: serde_json::Value = serde_json::from_str(&line).expect("json log");
    chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str().expect("timestamp"))
        .expect("RFC 3339 timestamp")
}

/// The drain window as a load balancer sees it: `/ready` fails from the signal on, while the
/// API keeps answering 200 on new connections, each answer closing its connection so
/// keep-alive clients move on; connections are refused only once the window is over. The
/// test follows events (the 503, the service's "no longer accepting" line, the refusal) and
/// measures the window by the service's own log clock, so a slow machine cannot fail it.
/// A client that connected during the window but sends its request only once the service
/// refuses new connections is still answered: the service accepted it, so it owes an answer.
#[tokio::test]
async fn drain_window_serves_the_api_while_ready_fails_then_refuses_connections() {
    let mut service = Service::start(&[
        ("SHUTDOWN_DRAIN_SECONDS", "4"),
        ("SHUTDOWN_GRACE_SECONDS", "10"),
        // Longer than the wait below, so the silent connection is not closed for its silence.
        ("HEADER_READ_TIMEOUT_MS", "30000"),
    ]);
    let addr = service.api.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.expect("accepted");
    stream
        .write_all(b"GET /ready HTTP/1.1\r\nHost: example\r\n\r\n")
        .await
        .expect("sent");
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    drop(stream);

    service.terminate();
    let deadline = Instant::now() + Duration::from_secs(60);
    let http = client();
    loop {
        match http.get(service.url("/ready")).send().await {
            Ok(reply) if reply.status() == 503 => break,
            Ok(_) => {}
            Err(e) => panic!("/ready failed before it answered 503: {e}"),
        }
        assert!(Instant::now() < deadline, "/ready never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Connected while the service accepts; its request follows only after the stop.
    let mut late = TcpStream::connect(&addr)
        .await
        .expect("accepted while draining");

    // Every request is answered until the service says it stops accepting; after that line
    // a connection may be refused (or reset from the closing listener's backlog).
    let stopped = "no longer accepting connections";
    let mut served = 0;
    'drain: loop {
        for (path, status) in [("/orders/1", "200"), ("/ready", "503")] {
            let answer = ask_draining(&addr, path).await;
            let stopping = service.find_line(stopped).is_some();
            match answer {
                Ok(head) => {
                    assert!(
                        head.starts_with(&format!("http/1.1 {status}")),
                        "{path} during the drain: {head}"
                    );
                    assert!(head.contains("\r\nconnection: close"), "{head}");
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    panic!("{path}: the answer did not close its connection while draining")
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && stopping => {
                    break 'drain;
                }
                // The log line is written just before the stop; let it reach the pipe.
                Err(e) => assert!(
                    stopping || logged_within(&service, stopped, Duration::from_secs(10)),
                    "{path} failed during the drain window: {e}"
                ),
            }
        }
        served += 1;
        assert!(Instant::now() < deadline, "still accepting after the drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served >= 1, "no request answered during the drain window");
    late.write_all(b"GET /orders/1 HTTP/1.1\r\nHost: example\r\n\r\n")
        .await
        .expect("sent on the connection accepted before the stop");
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), late.read_to_end(&mut received))
        .await
        .expect("answered and closed within 30 s")
        .expect("answered, not reset");
    let head = String::from_utf8_lossy(&received).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200"),
        "connection accepted before the stop, request sent after it: {head:?}; {:?}",
        service.logs()
    );
    assert!(head.contains("\r\nconnection: close"), "{head}");
    let window = logged_at(&service, stopped) - logged_at(&service, "\"draining\"");
    assert!(
        window >= chrono::TimeDelta::seconds(4),
        "stopped accepting {window} after the signal, not 4 s"
    );
    let status = service.wait(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
}
