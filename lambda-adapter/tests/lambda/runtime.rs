//! The real `order-service-lambda` binary against a local Lambda Runtime API: what its log
//! lines say about the trace of each invocation. The function runs with the logging
//! environment Lambda gives the preview function as infra/preview configures it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::support::fixture;

/// Invocations to hand out, and the responses the function posted back.
#[derive(Clone)]
pub struct RuntimeApi {
    pub pending: Arc<Mutex<VecDeque<(String, String, Value)>>>,
    pub answers: mpsc::UnboundedSender<(String, Value)>,
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    // Nothing queued: hold the poll open, as Lambda does between invocations, until a test
    // queues the next one.
    let (request_id, xray, event) = loop {
        if let Some(invocation) = api.pending.lock().expect("queue").pop_front() {
            break invocation;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        + 30_000;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        headers.insert(name, HeaderValue::from_str(value).expect("header"));
    };
    set("lambda-runtime-aws-request-id", &request_id);
    set("lambda-runtime-deadline-ms", &deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:eu-west-1:123456789012:function:order-service",
    );
    set("lambda-runtime-trace-id", &xray);
    (headers, event.to_string())
}

async fn respond(
    State(api): State<RuntimeApi>,
    Path(request_id): Path<String>,
    body: String,
) -> &'static str {
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = api.answers.send((request_id, body));
    ""
}

/// An error the function posted: `{"error": {errorType, errorMessage}}`.
async fn respond_error(
    State(api): State<RuntimeApi>,
    Path(request_id): Path<String>,
    body: String,
) -> &'static str {
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = api
        .answers
        .send((request_id, serde_json::json!({ "error": body })));
    ""
}

async fn register_extension() -> (HeaderMap, &'static str) {
    let mut headers = HeaderMap::new();
    headers.insert(
        "lambda-extension-identifier",
        HeaderValue::from_static("extension-1"),
    );
    let body =
        r#"{"functionName":"order-service","functionVersion":"$LATEST","handler":"bootstrap"}"#;
    (headers, body)
}

pub struct Function {
    child: Child,
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The preview function's Terraform, whose logging settings Lambda turns into the
/// environment of the process.
const PREVIEW_LAMBDA_TF: &str = include_str!("../../../infra/preview/lambda.tf");

/// What Lambda sets for logging in the function's process, as infra/preview configures it:
/// `AWS_LAMBDA_LOG_FORMAT` from `logging_config.log_format` (Lambda sets it for every
/// function, `Text` by default), and a `LOG_FORMAT` the function's own environment may hold.
fn configured_logging_env() -> Vec<(&'static str, String)> {
    let setting = |name: &str| {
        PREVIEW_LAMBDA_TF.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"').to_owned())
        })
    };
    let mut env = vec![(
        "AWS_LAMBDA_LOG_FORMAT",
        setting("log_format").unwrap_or_else(|| "Text".to_owned()),
    )];
    if let Some(format) = setting("LOG_FORMAT") {
        env.push(("LOG_FORMAT", format));
    }
    env
}

pub fn start_function(runtime_api: &str) -> Function {
    let mut child = Command::new(env!("CARGO_BIN_EXE_order-service-lambda"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "order-service")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("ENVIRONMENT", "preview-7")
        .envs(configured_logging_env())
        .env("API_KEYS", "fixture-key")
        .env("ENABLE_METRICS", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("function starts");
    let output = Arc::new(Mutex::new(Vec::new()));
    let streams: Vec<Box<dyn std::io::Read + Send>> = vec![
        Box::new(child.stdout.take().expect("stdout")),
        Box::new(child.stderr.take().expect("stderr")),
    ];
    for stream in streams {
        let output = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                output.lock().expect("log").push(line);
            }
        });
    }
    Function { child, output }
}

impl Function {
    /// The access-log line of the invocation with this Lambda request id.
    async fn access_line(&self, request_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = self.output.lock().expect("log").clone();
            let found = lines.iter().find_map(|line| {
                let doc: Value = serde_json::from_str(line).ok()?;
                let spans = doc["spans"].as_array()?;
                let ours = spans.iter().any(|s| s["requestId"] == request_id);
                (ours && doc["status"].is_number()).then_some(doc)
            });
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no access line for {request_id}: {lines:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn span<'a>(line: &'a Value, name: &str) -> &'a Value {
    line["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no span {name:?} in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_carry_the_callers_trace_and_the_xray_trace() {
    const XRAY: &str = "Root=1-6720e1a7-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1";
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let mut with_traceparent = fixture("http_api_default_list_orders.json");
    with_traceparent["headers"]["traceparent"] = Value::from(TRACEPARENT);
    let mut without_trace = fixture("http_api_default_list_orders.json");
    if let Some(headers) = without_trace["headers"].as_object_mut() {
        headers.retain(|name, _| !name.eq_ignore_ascii_case("x-amzn-trace-id"));
    }
    let (answers, mut answered) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        pending: Arc::new(Mutex::new(VecDeque::from([
            ("invoke-1".to_owned(), XRAY.to_owned(), with_traceparent),
            ("invoke-2".to_owned(), XRAY.to_owned(), without_trace),
        ]))),
        answers,
    };
    let addr = serve(api).await;
    let function = start_function(&addr.to_string());

    for expected in ["invoke-1", "invoke-2"] {
        let answer = tokio::time::timeout(Duration::from_secs(20), answered.recv()).await;
        let Ok(Some((request_id, response))) = answer else {
            let output = function.output.lock().expect("log").clone();
            panic!("no answer to {expected} within 60 s; function output: {output:#?}");
        };
        assert_eq!(request_id, expected);
        assert_eq!(response["statusCode"], 200, "{response}");
    }

    // The caller's W3C trace is the request's trace; X-Ray's stays on the invocation span.
    let first = function.access_line("invoke-1").await;
    assert_eq!(
        span(&first, "request")["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "{first}"
    );
    assert_eq!(span(&first, "Lambda runtime invoke")["xrayTraceId"], XRAY);

    // With no trace from the caller, the X-Ray trace is the request's trace.
    let second = function.access_line("invoke-2").await;
    assert_eq!(
        span(&second, "request")["trace_id"],
        "6720e1a70123456789abcdef01234567",
        "{second}"
    );
}

/// Serves the Runtime API (and the extension API the shutdown handler registers with) on a
/// free loopback port.
pub async fn serve(api: RuntimeApi) -> std::net::SocketAddr {
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(respond_error),
        )
        // The graceful-shutdown handler registers an internal extension first.
        .route("/2020-01-01/extension/register", post(register_extension))
        .route(
            "/2020-01-01/extension/event/next",
            get(std::future::pending::<String>),
        )
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}
