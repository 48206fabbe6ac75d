//! A client's `x-request-id` is kept only when it is short and plain; otherwise the service
//! makes its own and logs nothing of the client's value.

use axum::http::Method;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::connections::read_response;
use crate::support::binary::Service;
use crate::support::{local_app, request, send};

fn echoed(head: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("x-request-id")
            .then(|| value.trim().to_owned())
    })
}

#[tokio::test]
async fn unacceptable_request_ids_are_replaced_and_never_logged() {
    let service = Service::start(&[]);
    let addr = service.api.trim_start_matches("http://").to_owned();
    let long = "a".repeat(129);
    let cases = [
        "forged\" level=\"ERROR",
        "Bearer s3cr3t-token",
        long.as_str(),
        "id=1;x",
    ];
    for id in cases {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        let head = format!(
            "GET /orders/999 HTTP/1.1\r\nhost: test\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("send");
        let answer = read_response(&mut stream).await;
        let ours = echoed(&answer).expect("a request id");
        assert_ne!(ours, id);
        assert_eq!(ours.len(), 36, "{ours}");
    }
    // Every request's access log line is written; none holds a client's value.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let answered = || {
        let logs = service.logs();
        logs.iter().filter(|l| l.contains("\"status\":404")).count()
    };
    while answered() < cases.len() {
        assert!(std::time::Instant::now() < deadline, "{:?}", service.logs());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for line in service.logs() {
        for id in cases {
            assert!(!line.contains(id), "{id:?} reached the log: {line}");
        }
    }
}

#[tokio::test]
async fn acceptable_request_ids_are_kept() {
    let app = local_app().await;
    let longest = format!("{}-._", "Z9".repeat(62));
    assert_eq!(longest.len(), 127);
    for id in [
        "trace-me-42",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        longest.as_str(),
    ] {
        let reply = send(
            &app,
            request(Method::GET, "/health", &[("x-request-id", id)], None),
        )
        .await;
        assert_eq!(reply.header("x-request-id"), Some(id));
    }
    let twice = axum::http::Request::builder()
        .uri("/health")
        .header("x-request-id", "one")
        .header("x-request-id", "two")
        .body(axum::body::Body::empty())
        .expect("request");
    let reply = send(&app, twice).await;
    let id = reply.header("x-request-id").expect("an id");
    assert!(id != "one" && id != "two" && id.len() == 36, "{id}");
}
