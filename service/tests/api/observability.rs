//! What operators read: server errors logged with their real cause, bounded metric labels.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use order_service::domain::{NewOrder, Order, OrderId};
use order_service::router;
use order_service::store::{
    Created, Idempotency, OrderStore, Page, PageRequest, StatusChange, StoreError,
};
use serde_json::Value;

use crate::connections::wait_for_line;
use crate::support::binary::Service;
use crate::support::postgres::TestDb;
use crate::support::{get, request, send, state_with};

/// Log lines written while the guard lives, as the JSON the container writes.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// Captures this thread's log output (tests run on a current-thread runtime).
    pub fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(captured.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    pub fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON log line"))
            .collect()
    }

    /// The access-log line of the request that answered `status`.
    pub fn access_line(&self, status: u16) -> Value {
        self.lines()
            .into_iter()
            .find(|l| l["status"] == status && l["latency_ms"].is_number())
            .unwrap_or_else(|| panic!("no access line with status {status}: {:?}", self.lines()))
    }
}

/// A store that fails the way bugs and stalls do.
enum Faulty {
    Panics,
    Stalls,
}

#[async_trait]
impl OrderStore for Faulty {
    async fn create(&self, _: NewOrder, _: Option<Idempotency>) -> Result<Created, StoreError> {
        Err(StoreError::Internal("not used".into()))
    }
    async fn get(&self, _id: OrderId) -> Result<Option<Arc<Order>>, StoreError> {
        match self {
            Faulty::Panics => panic!("order row without a status"),
            Faulty::Stalls => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(None)
            }
        }
    }
    async fn list(&self, _: PageRequest) -> Result<Page, StoreError> {
        Err(StoreError::Internal("not used".into()))
    }
    async fn set_status(&self, _: OrderId, _: StatusChange) -> Result<Arc<Order>, StoreError> {
        Err(StoreError::Internal("not used".into()))
    }
    async fn seed(&self, _: Vec<Order>) -> Result<(), StoreError> {
        Ok(())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_panic_is_logged_at_error_with_its_message() {
    let state = state_with(&[]).await.with_store(Arc::new(Faulty::Panics));
    let app = router(state);
    let (logs, _guard) = Captured::start();
    let reply = get(&app, "/orders/1").await;
    let body = reply.problem(StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["detail"], "internal error");
    let line = logs.access_line(500);
    assert_eq!(line["level"], "ERROR", "{line}");
    assert_eq!(line["cause"], "panic: order row without a status", "{line}");
}

#[tokio::test]
async fn a_timeout_is_logged_at_error_as_a_timeout() {
    let state = state_with(&[("REQUEST_TIMEOUT_MS", "100")])
        .await
        .with_store(Arc::new(Faulty::Stalls));
    let app = router(state);
    let (logs, _guard) = Captured::start();
    get(&app, "/orders/1")
        .await
        .problem(StatusCode::GATEWAY_TIMEOUT);
    let line = logs.access_line(504);
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(
        line["cause"]
            .as_str()
            .is_some_and(|c| c.starts_with("timed out")),
        "{line}"
    );
}

/// A real driver error: the table is gone under the running service. The log line names
/// PostgreSQL's complaint; the client and the log never see the connection password.
#[tokio::test]
async fn a_store_failure_is_logged_at_error_with_the_driver_error() {
    let db = TestDb::new().await;
    db.migrate("public").await;
    let url = db.url();
    let service = Service::start(&[("STORE", "postgres"), ("DATABASE_URL", url.as_str())]);
    let http = reqwest::Client::new();
    db.execute("ALTER TABLE orders RENAME TO orders_moved")
        .await;

    let reply = http
        .get(service.url("/orders/1"))
        .send()
        .await
        .expect("answered");
    assert_eq!(reply.status(), 500);
    let body = reply.text().await.expect("body");
    assert!(
        !body.contains("orders_moved") && !body.contains("relation"),
        "{body}"
    );

    let line = wait_for_line(&service, r#""status":500"#).await;
    let line: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(line["level"], "ERROR", "{line}");
    let cause = line["cause"].as_str().expect("cause");
    assert!(
        cause.contains(r#"relation "orders" does not exist"#),
        "{cause}"
    );
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password.to_owned())
        .expect("the test URL has a password");
    assert!(
        service.logs().iter().all(|l| !l.contains(&password)),
        "the password reached a log line"
    );
}

/// A made-up method is one more request, not one more time series.
#[tokio::test]
async fn unknown_methods_share_one_metric_label() {
    let state = state_with(&[]).await;
    let app = router(state.clone());
    for method in ["FROBNICATE", "X-DELETE-ALL", "get"] {
        let method = Method::from_bytes(method.as_bytes()).expect("a valid token");
        send(&app, request(method, "/orders/1", &[], None)).await;
    }
    send(&app, request(Method::GET, "/orders/1", &[], None)).await;
    let text = state.metrics.render();
    assert!(
        !text.contains("FROBNICATE") && !text.contains("X-DELETE-ALL"),
        "{text}"
    );
    assert!(!text.contains(r#"method="get""#), "{text}");
    assert!(
        text.contains(r#"http_requests_total{method="OTHER",route="/orders/{id}",status="405"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"method="GET""#), "{text}");

    // The same registry feeds CloudWatch through EMF on the Lambda.
    let mut exporter = order_service::metrics::emf::EmfExporter::new(
        order_service::metrics::emf::NAMESPACE,
        "test".to_owned(),
    );
    let lines = exporter.flush(state.metrics.registry(), 0);
    let methods: Vec<&str> = lines.iter().filter_map(|l| l["method"].as_str()).collect();
    assert!(methods.contains(&"OTHER"), "{lines:?}");
    assert!(
        methods.iter().all(|m| ["OTHER", "GET"].contains(m)),
        "{lines:?}"
    );
}

/// A caller's W3C trace, or the X-Ray trace a load balancer added, is the `trace_id` of the
/// request's log lines, and comes back in `traceresponse`.
#[tokio::test]
async fn the_callers_trace_id_is_in_the_access_log_and_the_response() {
    let service = Service::start(&[]);
    let http = reqwest::Client::new();
    for (header, value, trace_id) in [
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "0af7651916cd43dd8448eb211c80319c",
        ),
        (
            "x-amzn-trace-id",
            "Root=1-6720e1a7-9c1e3c4f2b7a8d6e5f403122;Sampled=0",
            "6720e1a79c1e3c4f2b7a8d6e5f403122",
        ),
    ] {
        let reply = http
            .get(service.url("/orders/1"))
            .header(header, value)
            .send()
            .await
            .expect("answered");
        assert_eq!(reply.status(), 200);
        let traceresponse = reply
            .headers()
            .get("traceresponse")
            .and_then(|v| v.to_str().ok())
            .expect("traceresponse header");
        assert!(
            traceresponse.starts_with(&format!("00-{trace_id}-")),
            "{traceresponse}"
        );
        let line = wait_for_line(&service, trace_id).await;
        let line: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(line["span"]["trace_id"], trace_id, "{line}");
        assert_eq!(line["span"]["route"], "/orders/{id}", "{line}");
        assert_eq!(line["status"], 200, "{line}");
    }
}

/// The access line follows `RUST_LOG` by target as every other line does: turned down, a
/// request writes none; on, exactly one, with the fields dashboards read. Lines are written
/// in order, so once the shutdown's last line is out, a missing access line is missing.
#[tokio::test]
async fn rust_log_turns_the_access_line_off_and_on() {
    let http = reqwest::Client::new();
    for (rust_log, logged) in [("info,order_service::access=warn", false), ("info", true)] {
        let mut service = Service::start(&[("RUST_LOG", rust_log)]);
        let request_id = format!("probe-{logged}");
        let reply = http
            .get(service.url("/orders/1"))
            .header("x-request-id", &request_id)
            .send()
            .await
            .expect("answered");
        assert_eq!(reply.status(), 200);
        service.terminate();
        service.wait(Duration::from_secs(10));
        wait_for_line(&service, "\"stopped\"").await;
        let lines: Vec<Value> = service
            .logs()
            .iter()
            .filter(|line| line.contains(&request_id))
            .map(|line| serde_json::from_str(line).expect("json"))
            .collect();
        if !logged {
            assert!(lines.is_empty(), "RUST_LOG={rust_log}: {lines:?}");
            continue;
        }
        let [line] = lines.as_slice() else {
            panic!("RUST_LOG={rust_log}: not one access line: {lines:?}");
        };
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["message"], "request", "{line}");
        assert_eq!(line["target"], "order_service::access", "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert!(
            line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{line}"
        );
        assert_eq!(line["span"]["name"], "request", "{line}");
        assert_eq!(line["span"]["method"], "GET", "{line}");
        assert_eq!(line["span"]["route"], "/orders/{id}", "{line}");
        assert_eq!(line["span"]["request_id"], request_id.as_str(), "{line}");
        assert!(
            line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
    }
}
