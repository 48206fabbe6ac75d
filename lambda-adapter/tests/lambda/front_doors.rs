//! The largest page through every front door: the real `order-service-lambda` binary behind a
//! stand-in Runtime API, fed lambda_http's own Function URL, HTTP API, REST API and ALB event
//! fixtures, walks `GET /orders?limit=500` over 500 orders of the largest size by its next
//! links. Every response the function posts must fit its door (6 MB for a buffered response
//! through a Function URL or API Gateway, 1 MB behind an ALB), with and without
//! `Accept-Encoding`, and the walk must see every order exactly once.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::runtime::{serve, start_function, Function, RuntimeApi};

/// The largest answer each door takes from a buffered function, in bytes of the response
/// document the function posts.
const BUFFERED_LIMIT: usize = 6_000_000;
const ALB_LIMIT: usize = 1_000_000;

#[derive(Clone, Copy)]
enum Door {
    FunctionUrl,
    HttpApi,
    RestApi,
    Alb,
}

impl Door {
    fn fixture(self) -> &'static str {
        match self {
            Door::FunctionUrl => "lambda_function_url_request.json",
            Door::HttpApi => "apigw_v2_proxy_request.json",
            Door::RestApi => "apigw_proxy_request.json",
            Door::Alb => "alb_request.json",
        }
    }

    fn limit(self) -> usize {
        match self {
            Door::Alb => ALB_LIMIT,
            _ => BUFFERED_LIMIT,
        }
    }

    /// The door's fixture as a request for `method path?query` with these headers and body.
    fn event(
        self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Value {
        let mut event = lambda_http_fixture(self.fixture());
        let params: Map<String, Value> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        let mut header_map = Map::new();
        for (name, value) in headers {
            header_map.insert((*name).to_owned(), json!(value));
        }
        match self {
            Door::FunctionUrl | Door::HttpApi => {
                event["rawPath"] = json!(path);
                event["rawQueryString"] = json!(query);
                event["queryStringParameters"] = Value::Object(params);
                event["requestContext"]["http"]["method"] = json!(method);
                event["requestContext"]["http"]["path"] = json!(path);
                event["headers"] = Value::Object(header_map);
                event.as_object_mut().map(|e| e.remove("cookies"));
            }
            Door::RestApi | Door::Alb => {
                event["httpMethod"] = json!(method);
                event["path"] = json!(path);
                let multi: Map<String, Value> = params
                    .iter()
                    .map(|(k, v)| (k.clone(), json!([v])))
                    .collect();
                event["queryStringParameters"] = Value::Object(params);
                if matches!(self, Door::RestApi) {
                    event["requestContext"]["httpMethod"] = json!(method);
                    event["multiValueQueryStringParameters"] = Value::Object(multi);
                }
                event["headers"] = Value::Object(header_map);
            }
        }
        event["body"] = body.map_or(Value::Null, |b| json!(b));
        event["isBase64Encoded"] = json!(false);
        event
    }
}

/// A fixture from the lambda_http sources cargo unpacked for this build (the version in
/// Cargo.lock).
fn lambda_http_fixture(name: &str) -> Value {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lock = std::fs::read_to_string(manifest.join("../Cargo.lock")).expect("Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"lambda_http\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("lambda_http in Cargo.lock");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    let registries = std::fs::read_dir(cargo_home.join("registry/src")).expect("cargo registry");
    let path = registries
        .filter_map(Result::ok)
        .map(|index| {
            index
                .path()
                .join(format!("lambda_http-{version}/tests/data/{name}"))
        })
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("lambda_http-{version}/tests/data/{name} not unpacked"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture json")
}

/// An order of the largest size: 100 items, every text at its length limit in two-byte
/// characters and quotes (which JSON and the Lambda envelope both escape).
fn largest_order(n: usize) -> String {
    let text = |len: usize| -> String {
        let tag = format!("{n:04}\"");
        tag.chars().chain("é".chars().cycle()).take(len).collect()
    };
    let items: Vec<Value> = (0..100)
        .map(|i| json!({"product_id": i + 1, "name": text(200), "quantity": 10_000, "price": 999_999.99}))
        .collect();
    json!({"customer_name": text(200), "items": items, "shipping_address": text(500)}).to_string()
}

struct Invoker {
    api: RuntimeApi,
    answered: mpsc::UnboundedReceiver<(String, Value)>,
    function: Function,
    count: usize,
}

impl Invoker {
    /// One invocation: the response document the function posted, and its size.
    async fn invoke(&mut self, event: Value) -> (Value, usize) {
        self.count += 1;
        let id = format!("invoke-{}", self.count);
        self.api.pending.lock().expect("queue").push_back((
            id.clone(),
            "Root=1-00000000-000000000000000000000000".into(),
            event,
        ));
        let answer = tokio::time::timeout(Duration::from_secs(60), self.answered.recv()).await;
        let Ok(Some((answered_id, response))) = answer else {
            let output = self.function.output.lock().expect("log").clone();
            panic!("no answer to {id} within 60 s; function output: {output:#?}");
        };
        assert_eq!(answered_id, id);
        // The document as posted: compact JSON, as lambda_runtime writes it.
        let size = serde_json::to_vec(&response).expect("json").len();
        (response, size)
    }
}

/// A response header, wherever the door's response format puts it.
fn header<'a>(response: &'a Value, name: &str) -> Option<&'a str> {
    let single = response["headers"]
        .as_object()
        .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
        .and_then(|(_, v)| v.as_str());
    single.or_else(|| {
        response["multiValueHeaders"]
            .as_object()
            .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .and_then(|(_, v)| v[0].as_str())
    })
}

/// The body as the client reads it: base64 undone, gzip decoded.
fn body(response: &Value) -> Vec<u8> {
    let text = response["body"].as_str().unwrap_or_default();
    let raw = match response["isBase64Encoded"].as_bool() {
        Some(true) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64"),
        _ => text.as_bytes().to_vec(),
    };
    match header(response, "content-encoding") {
        Some("gzip") => {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice())
                .read_to_end(&mut plain)
                .expect("gzip");
            plain
        }
        None => raw,
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_door_walks_the_largest_page_within_its_limit() {
    let (answers, answered) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        pending: Arc::new(Mutex::new(VecDeque::new())),
        answers,
    };
    let addr = serve(api.clone()).await;
    let function = start_function(&addr.to_string());
    let mut invoker = Invoker {
        api,
        answered,
        function,
        count: 0,
    };
    let auth = ("authorization", "Bearer fixture-key");
    // The orders there before (the sample data), then the 500 created here.
    let before = Door::FunctionUrl.event("GET", "/orders", "limit=500", &[auth], None);
    let (response, _) = invoker.invoke(before).await;
    let existing: Vec<Value> = serde_json::from_slice(&body(&response)).expect("page");
    let mut ids: Vec<String> = existing
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect();
    for n in 0..500 {
        let body = largest_order(n);
        let event = Door::FunctionUrl.event(
            "POST",
            "/orders",
            "",
            &[auth, ("content-type", "application/json")],
            Some(&body),
        );
        let (response, _) = invoker.invoke(event).await;
        assert_eq!(response["statusCode"], 201, "{}", response["body"]);
        let order: Value = serde_json::from_slice(&self::body(&response)).expect("order");
        ids.push(order["id"].as_str().expect("id").to_owned());
    }

    let mut figures = HashMap::new();
    for door in [Door::FunctionUrl, Door::HttpApi, Door::RestApi, Door::Alb] {
        for accept in [None, Some("gzip")] {
            let headers: Vec<(&str, &str)> = std::iter::once(auth)
                .chain(accept.map(|a| ("accept-encoding", a)))
                .collect();
            let mut query = "limit=500".to_owned();
            let mut seen = Vec::new();
            let mut largest = 0;
            loop {
                let event = door.event("GET", "/orders", &query, &headers, None);
                let (response, size) = invoker.invoke(event).await;
                let context = format!("{} with {accept:?}", door.fixture());
                assert_eq!(
                    response["statusCode"], 200,
                    "{context}: {}",
                    response["body"]
                );
                assert!(size <= door.limit(), "{context}: {size} bytes posted");
                assert_eq!(
                    header(&response, "content-encoding"),
                    accept,
                    "{context}: compressed only when asked"
                );
                largest = largest.max(size);
                let page: Vec<Value> = serde_json::from_slice(&body(&response)).expect("page");
                seen.extend(
                    page.iter()
                        .map(|o| o["id"].as_str().expect("id").to_owned()),
                );
                let Some(link) = header(&response, "link") else {
                    break;
                };
                query = link
                    .split_once('?')
                    .and_then(|(_, rest)| rest.split_once('>'))
                    .map(|(query, _)| query.to_owned())
                    .expect("next link");
            }
            assert_eq!(seen, ids, "{} with {accept:?}", door.fixture());
            figures.insert((door.fixture(), accept), largest);
        }
    }
    // The figures, for whoever reads the test output.
    println!("largest response posted per door: {figures:#?}");
}
