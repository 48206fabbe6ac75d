//! Clients that stop reading, hold connections open or send huge heads cannot pin the
//! binary's memory: the write timeout, the connection cap and the head size bound, each shown
//! on its own. Bounds are generous: the machine running them may be busy.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::connections::read_response;
use crate::support::binary::Service;

fn addr(service: &Service) -> std::net::SocketAddr {
    service
        .api
        .trim_start_matches("http://")
        .parse()
        .expect("socket address")
}

/// An order of the largest size the service accepts (about 30 KB of JSON).
fn largest_order(n: usize) -> String {
    let items: Vec<_> = (0..100)
        .map(|i| {
            json!({"product_id": i + 1, "name": format!("{n:06}{}", "x".repeat(194)),
                   "quantity": 10_000, "price": 999_999.99})
        })
        .collect();
    json!({"customer_name": "n".repeat(200), "shipping_address": "a".repeat(500), "items": items})
        .to_string()
}

/// Creates `count` of the largest orders over one keep-alive connection.
async fn fill(service: &Service, count: usize) {
    let mut stream = TcpStream::connect(addr(service)).await.expect("connect");
    for n in 0..count {
        let body = largest_order(n);
        let head = format!(
            "POST /orders HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("send head");
        stream.write_all(body.as_bytes()).await.expect("send body");
        let answer = read_response(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    }
}

/// A client that asks for a large answer with a tiny receive window, so the server's writes
/// stall almost at once.
async fn stalled_reader(service: &Service) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small window");
    let mut stream = socket.connect(addr(service)).await.expect("connect");
    stream
        .write_all(b"GET /orders?limit=500 HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .expect("request");
    stream
}

/// Reads everything the server still sends; returns the bytes and whether it ended the
/// connection (EOF or reset) within `limit`.
async fn drain(stream: &mut TcpStream, limit: Duration) -> (usize, bool) {
    let deadline = Instant::now() + limit;
    let mut total = 0;
    let mut buffer = vec![0_u8; 1 << 16];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return (total, false),
            Ok(Ok(0) | Err(_)) => return (total, true),
            Ok(Ok(n)) => total += n,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    // One page of about 6 MB (past the default page budget): more than the kernel buffers on
    // both sides hold.
    let service = Service::start(&[
        ("WRITE_TIMEOUT_MS", "1000"),
        ("SEED_SAMPLE_DATA", "false"),
        ("PAGE_MAX_BYTES", "67108864"),
    ]);
    fill(&service, 200).await;
    let mut stream = stalled_reader(&service).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (received, closed) = drain(&mut stream, Duration::from_secs(20)).await;
    assert!(closed, "the connection is still open");
    assert!(
        received < 4_000_000,
        "{received} bytes arrived: the server kept writing to a client that did not read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_of_an_answer_the_kernel_buffered_is_cut_off_too() {
    // A page at the default budget (about 2 MB) fits in the kernel's socket buffers: the
    // service has written all of it and the connection is idle on its side. One connection
    // allowed, so a fresh client is served only once the stalled one is closed; the keep-alive
    // timeout is far away, so only giving up on the unacknowledged data can close it.
    let service = Service::start(&[
        ("WRITE_TIMEOUT_MS", "1000"),
        ("KEEP_ALIVE_TIMEOUT_SECONDS", "600"),
        ("MAX_CONNECTIONS", "1"),
        ("SEED_SAMPLE_DATA", "false"),
    ]);
    fill(&service, 100).await;
    let _stalled = stalled_reader(&service).await;
    let mut fresh = TcpStream::connect(addr(&service))
        .await
        .expect("the kernel's backlog takes it");
    fresh
        .write_all(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .expect("request");
    // The wait for the first byte is the one the stalled connection decides; read_response
    // gives up after 10 s of silence, too soon to be this test's bound.
    let mut first = [0_u8; 1];
    tokio::time::timeout(Duration::from_secs(30), fresh.peek(&mut first))
        .await
        .expect("the stalled connection is still open 30 s on: nobody else is served")
        .expect("peek");
    let answer = read_response(&mut fresh).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let service = Service::start(&[("MAX_CONNECTIONS", "2")]);
    let request = b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n";
    // Two keep-alive connections, answered and left idle: they count.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr(&service)).await.expect("connect");
        stream.write_all(request).await.expect("request");
        read_response(&mut stream).await;
        held.push(stream);
    }
    let mut third = TcpStream::connect(addr(&service))
        .await
        .expect("the kernel's backlog takes it");
    third.write_all(request).await.expect("request");
    let mut buffer = [0_u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(1500), third.read(&mut buffer)).await;
    assert!(early.is_err(), "a third connection was served past the cap");
    drop(held.pop());
    let answer = read_response(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_request_head_over_the_bound_is_431() {
    let service = Service::start(&[("MAX_REQUEST_HEAD_BYTES", "16384")]);
    let mut stream = TcpStream::connect(addr(&service)).await.expect("connect");
    let head = format!(
        "GET /health HTTP/1.1\r\nhost: t\r\nx-padding: {}\r\n\r\n",
        "p".repeat(32 * 1024)
    );
    stream.write_all(head.as_bytes()).await.expect("request");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // A head within the bound is served.
    let mut stream = TcpStream::connect(addr(&service)).await.expect("connect");
    let head = format!(
        "GET /health HTTP/1.1\r\nhost: t\r\nx-padding: {}\r\n\r\n",
        "p".repeat(8 * 1024)
    );
    stream.write_all(head.as_bytes()).await.expect("request");
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
}
