//! Connection hygiene of the real binary: slow headers, idle keep-alive, load shedding.
//! Bounds are generous on purpose: the machine running them may be busy.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::binary::Service;

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (EOF or reset); returns how long that took,
/// or `None` if it stayed open for `limit`.
async fn time_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0_u8; 4096];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// The first log line containing `needle`, waiting for the reader to catch up.
pub async fn wait_for_line(service: &Service, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = service.find_line(needle) {
            return line;
        }
        assert!(Instant::now() < deadline, "no log line with {needle:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads one response with a `Content-Length` body; returns its head.
pub async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("response within 10 s")
            .expect("read");
        assert!(n > 0, "closed before a full response");
        received.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&received).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().expect("length"))
                })
                .expect("content-length");
            if body.len() >= length {
                return head.to_owned();
            }
        }
    }
}

/// Hundreds of clients that never finish their request head are all disconnected once the
/// header timeout passes, on both ports, while ordinary requests keep being answered.
#[tokio::test]
async fn slow_header_clients_are_closed_while_others_are_served() {
    let service = Service::start(&[("HEADER_READ_TIMEOUT_MS", "1000")]);
    let metrics = service.metrics.clone().expect("metrics port");
    let mut slow = Vec::new();
    for i in 0..400 {
        let target = match i % 8 {
            0 => addr(&metrics),
            _ => addr(&service.api),
        };
        // Taken before connecting: the server's header timer starts at its accept, which
        // comes later, so however late this client gets to run, the time it measures is
        // never shorter than the time the server waited.
        let connecting = Instant::now();
        let mut stream = TcpStream::connect(&target).await.expect("connect");
        stream
            .write_all(b"GET /orders/1 HTTP/1.1\r\nHost: example\r\n")
            .await
            .expect("partial head");
        slow.push(tokio::spawn(async move {
            time_until_closed(&mut stream, Duration::from_secs(30))
                .await
                .map(|_| connecting.elapsed())
        }));
    }

    let http = reqwest::Client::new();
    let mut served = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let reply = http
            .get(service.url("/orders/1"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("ordinary request answered");
        assert_eq!(reply.status(), 200);
        served += 1;
    }
    assert!(served > 0);

    for (i, client) in slow.into_iter().enumerate() {
        let closed = client.await.expect("reader");
        let closed = closed.unwrap_or_else(|| panic!("slow client {i} still open after 30 s"));
        // Never before the timeout: it is the timeout that closed it, not a refusal.
        assert!(
            closed >= Duration::from_millis(1000),
            "client {i}: closed {closed:?} after connecting"
        );
    }
}

/// An idle keep-alive connection outlives the header timeout (a load balancer reusing it
/// must not race a close), and is closed once the idle timeout passes.
#[tokio::test]
async fn idle_keep_alive_closes_after_the_idle_timeout_and_not_before() {
    let service = Service::start(&[
        ("HEADER_READ_TIMEOUT_MS", "500"),
        ("KEEP_ALIVE_TIMEOUT_SECONDS", "8"),
    ]);
    let mut stream = TcpStream::connect(addr(&service.api))
        .await
        .expect("connect");
    let request = b"GET /health HTTP/1.1\r\nHost: example\r\n\r\n";
    stream.write_all(request).await.expect("request");
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));

    // Well past the header timeout, well before the idle timeout (5 s to spare): still open
    // and usable.
    assert_eq!(
        time_until_closed(&mut stream, Duration::from_secs(3)).await,
        None,
        "closed while idle for less than the idle timeout"
    );
    // Taken before the request: the server's idle timer starts once it has answered, later,
    // so the idle time measured from here is never shorter than the server's.
    let asked = Instant::now();
    stream.write_all(request).await.expect("second request");
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));

    time_until_closed(&mut stream, Duration::from_secs(60))
        .await
        .expect("idle connection closed within 60 s");
    let idle = asked.elapsed();
    assert!(
        idle >= Duration::from_secs(8),
        "closed {idle:?} after the request"
    );
}

/// Above the in-flight bound a request is answered 503 with `Retry-After` at once, as a
/// problem; once the load is gone requests succeed again.
#[tokio::test]
async fn requests_above_the_in_flight_bound_are_shed_at_once() {
    let service = Service::start(&[("MAX_IN_FLIGHT_REQUESTS", "2")]);
    let http = reqwest::Client::new();
    let metrics_url = format!("{}/metrics", service.metrics.as_deref().expect("metrics"));

    // Two uploads that never finish their body hold both slots.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr(&service.api))
            .await
            .expect("connect");
        stream
            .write_all(
                b"POST /orders HTTP/1.1\r\nHost: example\r\nContent-Type: application/json\r\n\
                  Content-Length: 500\r\n\r\n{\"customer_name\": ",
            )
            .await
            .expect("partial body");
        holders.push(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = http
            .get(&metrics_url)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if text.lines().any(|l| l == "http_requests_in_flight 2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uploads never in flight:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let asked = Instant::now();
    let shed = http
        .get(service.url("/orders/1"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("answered");
    assert!(asked.elapsed() < Duration::from_secs(5), "not at once");
    assert_eq!(shed.status(), 503);
    assert_eq!(
        shed.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(
        shed.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: serde_json::Value = shed.json().await.expect("problem");
    assert_eq!(body["status"], 503);

    drop(holders);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = http
            .get(service.url("/orders/1"))
            .send()
            .await
            .expect("answered")
            .status();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} after the load left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = http
        .get(&metrics_url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // Refusals are counted on their own and summarised at WARN, never an ERROR line each.
    assert!(
        text.lines()
            .any(|l| l.starts_with("http_requests_refused_total ")
                && l != "http_requests_refused_total 0"),
        "{text}"
    );
    let line = wait_for_line(&service, "requests refused in the last second").await;
    assert!(line.contains(r#""level":"WARN""#), "{line}");
    assert!(service.find_line("load shed").is_none());
}

/// While the pod is refusing, a request left unread in its socket longer than
/// `QUEUE_WAIT_TIMEOUT_MS` (here the process is stopped meanwhile, as a pod starved of CPU is)
/// is refused for that wait, which the once-a-second summary counts apart; once the pod has a
/// free place, a request read at once is served.
#[tokio::test]
async fn while_refusing_a_request_left_unread_too_long_is_refused_for_its_wait() {
    let service = Service::start(&[
        ("MAX_IN_FLIGHT_REQUESTS", "1"),
        ("ADAPTIVE_CONCURRENCY", "false"),
        ("QUEUE_WAIT_TIMEOUT_MS", "100"),
    ]);
    let request = b"GET /orders/1 HTTP/1.1\r\nHost: example\r\n\r\n";
    // An upload that has not finished its body holds the only place.
    let mut upload = TcpStream::connect(addr(&service.api))
        .await
        .expect("connect");
    let body = br#"{"customer_name": "Ada", "items": [{"product_id": 1, "name": "Widget", "quantity": 1, "price": 9.99}], "shipping_address": "1 Main St"}"#;
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: example\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    upload.write_all(head.as_bytes()).await.expect("head");
    upload
        .write_all(&body[..10])
        .await
        .expect("part of the body");
    let metrics_url = format!("{}/metrics", service.metrics.as_deref().expect("metrics"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reqwest::get(&metrics_url)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
        .lines()
        .any(|l| l == "http_requests_in_flight 1")
    {
        assert!(Instant::now() < deadline, "the upload never in flight");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut reader = TcpStream::connect(addr(&service.api))
        .await
        .expect("connect");
    reader.write_all(request).await.expect("request");
    let refused_at_the_limit = read_response(&mut reader).await;
    assert!(
        refused_at_the_limit.starts_with("HTTP/1.1 503"),
        "{refused_at_the_limit}"
    );
    assert!(
        refused_at_the_limit.contains("retry-after: 1"),
        "{refused_at_the_limit}"
    );

    // Just after the summary that counts that refusal the next one is a second away, so the
    // stop below ends well before it: the pod is still refusing when it reads the request.
    wait_for_line(&service, r#""refused":1,"#).await;
    service.stop();
    reader.write_all(request).await.expect("request");
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.signal("CONT");
    let head = read_response(&mut reader).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let summary = wait_for_line(&service, r#""waited_too_long":1"#).await;
    assert!(summary.contains(r#""level":"WARN""#), "{summary}");

    upload
        .write_all(&body[10..])
        .await
        .expect("rest of the body");
    assert!(read_response(&mut upload).await.starts_with("HTTP/1.1 201"));
    reader.write_all(request).await.expect("request");
    let head = read_response(&mut reader).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// A client that sends its request and then closes its side of the connection (a half-close:
/// `nc -N`, or a proxy passing on its client's) still gets the answer; before, the server took
/// the end of the request stream for a client that had gone and closed unanswered.
#[tokio::test]
async fn a_client_that_closes_its_side_after_the_request_still_gets_the_answer() {
    let service = Service::start(&[]);
    let mut stream = TcpStream::connect(addr(&service.api))
        .await
        .expect("connect");
    // Request and end of stream are both waiting when the server next runs, so it reads the
    // end right after the request, whatever the machine's load.
    service.stop();
    stream
        .write_all(b"GET /orders/1 HTTP/1.1\r\nHost: example\r\n\r\n")
        .await
        .expect("request");
    stream.shutdown().await.expect("half-close");
    service.signal("CONT");
    let head = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
}
