//! Drives the Lambda handler the way `lambda_http::run` does: event JSON → `LambdaRequest`
//! → `Adapter` (request conversion, handler, response conversion) → response JSON.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Service};
use order_service::{build_state, AppState, Config, Target};
use order_service_lambda::{handler, EmfWriter};
use serde_json::Value;

pub const API_KEY: &str = "fixture-key";

/// A state as a deployed preview has it: not local, one write key, sample data.
pub async fn state() -> AppState {
    let vars: HashMap<String, String> = [
        ("ENVIRONMENT", "preview-7"),
        ("API_KEYS", API_KEY),
        ("LOG_LEVEL", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::from_vars(&vars).expect("valid test config");
    build_state(config, Target::Lambda)
        .await
        .expect("state builds")
}

/// EMF lines written by the handler, captured instead of going to stdout.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Every line written so far, each parsed as JSON; clears the buffer.
    pub fn take_lines(&self) -> Vec<Value> {
        let bytes = std::mem::take(&mut *self.0.lock().expect("buffer"));
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("each EMF line is one JSON object"))
            .collect()
    }
}

/// The Lambda function in-process, with its EMF output captured.
pub struct Function {
    state: AppState,
    writer: Arc<EmfWriter>,
    pub emf: Captured,
    invocations: usize,
}

/// What the caller gets back, whichever event source it was.
#[derive(Debug)]
pub struct Reply {
    pub raw: Value,
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Function {
    pub async fn new() -> Self {
        Self::with_state(state().await)
    }

    pub fn with_state(state: AppState) -> Self {
        let emf = Captured::default();
        let writer = Arc::new(EmfWriter::new(&state, Box::new(emf.clone())));
        Self {
            state,
            writer,
            emf,
            invocations: 0,
        }
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// One invocation with a fresh Lambda request id (`req-1`, `req-2`, …).
    pub async fn invoke(&mut self, event: Value) -> Reply {
        self.invocations += 1;
        let request_id = format!("req-{}", self.invocations);
        self.invoke_with_id(event, &request_id).await
    }

    pub async fn invoke_with_id(&mut self, event: Value, request_id: &str) -> Reply {
        let payload: LambdaRequest =
            serde_json::from_value(event).expect("lambda_http accepts the event");
        let mut context = Context::default();
        context.request_id = request_id.to_owned();
        context.invoked_function_arn =
            "arn:aws:lambda:eu-west-1:123456789012:function:order-service-lambda".to_owned();
        // The same adapter `lambda_http::run` wraps around the handler.
        let mut adapter = Adapter::from(handler(self.state.clone(), self.writer.clone()));
        let response = adapter
            .call(LambdaEvent::new(payload, context))
            .await
            .expect("the handler is infallible");
        reply(serde_json::to_value(response).expect("response serialises"))
    }
}

/// Reads status, headers (single- and multi-value, lower-cased) and the decoded body.
fn reply(raw: Value) -> Reply {
    let status = raw["statusCode"].as_u64().expect("statusCode") as u16;
    let mut headers = BTreeMap::new();
    if let Some(map) = raw["multiValueHeaders"].as_object() {
        for (name, values) in map {
            let joined: Vec<&str> = values
                .as_array()
                .expect("multi-value header array")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            headers.insert(name.to_ascii_lowercase(), joined.join(", "));
        }
    }
    if let Some(map) = raw["headers"].as_object() {
        for (name, value) in map {
            headers.insert(
                name.to_ascii_lowercase(),
                value.as_str().expect("header string").to_owned(),
            );
        }
    }
    let body = match (&raw["body"], raw["isBase64Encoded"].as_bool()) {
        (Value::String(text), Some(true)) => String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .expect("base64 body"),
        )
        .expect("utf-8 body"),
        (Value::String(text), _) => text.clone(),
        _ => String::new(),
    };
    Reply {
        raw,
        status,
        headers,
        body,
    }
}

pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Checks one EMF document against the specification's required structure.
pub fn assert_valid_emf(line: &Value) {
    let root = line.as_object().expect("EMF root is an object");
    let aws = root["_aws"].as_object().expect("_aws object");
    assert!(aws["Timestamp"].is_u64(), "Timestamp is integer ms: {line}");
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics array");
    assert!(!directives.is_empty(), "{line}");
    for directive in directives {
        assert!(
            directive["Namespace"]
                .as_str()
                .is_some_and(|n| !n.is_empty()),
            "{directive}"
        );
        let dimension_sets = directive["Dimensions"].as_array().expect("Dimensions");
        assert!(!dimension_sets.is_empty(), "{directive}");
        for set in dimension_sets {
            let set = set.as_array().expect("a dimension set is an array");
            assert!(set.len() <= 30, "{directive}");
            for name in set {
                let name = name.as_str().expect("dimension names are strings");
                assert!(
                    root.get(name).is_some_and(Value::is_string),
                    "dimension {name} must be a string at the root: {line}"
                );
            }
        }
        let metrics = directive["Metrics"].as_array().expect("Metrics");
        assert!(!metrics.is_empty() && metrics.len() <= 100, "{directive}");
        for metric in metrics {
            let name = metric["Name"].as_str().expect("Name");
            assert!(metric["Unit"].is_string(), "{metric}");
            match &root[name] {
                Value::Number(_) => {}
                Value::Array(values) => {
                    assert!(!values.is_empty() && values.len() <= 100, "{line}");
                    assert!(values.iter().all(Value::is_number), "{line}");
                }
                other => panic!("metric {name} must be a number or array, got {other}"),
            }
        }
    }
}
