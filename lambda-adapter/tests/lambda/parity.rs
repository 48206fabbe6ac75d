//! One table of requests, answered by the container's router (oneshot) and by the Lambda
//! function through each event source: what a client sees must not differ.

use axum::body::Body;
use base64::Engine;
use http::Request;
use serde_json::{json, Map, Value};
use tower::ServiceExt;

use crate::support::{state, Function, API_KEY};

/// Headers clients act on; `x-request-id` and timestamps legitimately differ.
const COMPARED_HEADERS: [&str; 5] = [
    "content-type",
    "location",
    "link",
    "allow",
    "www-authenticate",
];

struct Row {
    method: &'static str,
    path: &'static str,
    query: &'static str,
    authorized: bool,
    body: Option<Value>,
}

/// A read with the key: orders are not public outside a developer's machine.
fn read(path: &'static str, query: &'static str) -> Row {
    Row {
        authorized: true,
        ..row("GET", path, query)
    }
}

fn row(method: &'static str, path: &'static str, query: &'static str) -> Row {
    Row {
        method,
        path,
        query,
        authorized: false,
        body: None,
    }
}

fn new_order() -> Value {
    json!({
        "customer_name": "Parity Test",
        "items": [{"product_id": 1, "name": "Widget", "quantity": 3, "price": 1.10}],
        "shipping_address": "1 Parity Road"
    })
}

fn table() -> Vec<Row> {
    vec![
        row("GET", "/", ""),
        row("GET", "/health", ""),
        row("GET", "/ready", ""),
        row("GET", "/orders", ""),
        read("/orders", ""),
        read("/orders", "limit=1"),
        read("/orders", "limit=1&cursor=1"),
        read("/orders", "limit=0"),
        read("/orders/1", ""),
        read("/orders/does-not-exist", ""),
        Row {
            body: Some(new_order()),
            ..row("POST", "/orders", "")
        },
        Row {
            authorized: true,
            body: Some(new_order()),
            ..row("POST", "/orders", "")
        },
        Row {
            authorized: true,
            body: Some(json!({"customer_name": ""})),
            ..row("POST", "/orders", "")
        },
        Row {
            authorized: true,
            body: Some(json!({"status": "SHIPPED"})),
            ..row("PATCH", "/orders/3", "")
        },
        Row {
            authorized: true,
            body: Some(json!({"status": "PENDING"})),
            ..row("PATCH", "/orders/1", "")
        },
        row("DELETE", "/orders/1", ""),
        row("GET", "/openapi.json", ""),
        row("GET", "/docs", ""),
        row("GET", "/no/such/route", ""),
    ]
}

fn headers(row: &Row) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("accept", "application/json".to_owned()),
        ("host", "orders.example.com".to_owned()),
    ];
    if row.body.is_some() {
        headers.push(("content-type", "application/json".to_owned()));
    }
    if row.authorized {
        headers.push(("authorization", format!("Bearer {API_KEY}")));
    }
    headers
}

fn query_map(query: &str) -> Value {
    if query.is_empty() {
        return Value::Null;
    }
    let map: Map<String, Value> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    Value::Object(map)
}

fn multi(map: &Value) -> Value {
    match map {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), json!([v]))).collect())
        }
        _ => Value::Null,
    }
}

/// The AWS event sources, each building its own event shape for a row.
#[derive(Debug, Clone, Copy)]
enum Source {
    FunctionUrl,
    HttpApiStage,
    RestApiStage,
    Alb,
}

impl Source {
    /// What precedes the service's paths in the URL the client called.
    fn client_prefix(self) -> &'static str {
        match self {
            Source::HttpApiStage => "/v1",
            Source::RestApiStage => "/prod",
            Source::FunctionUrl | Source::Alb => "",
        }
    }

    fn event(self, row: &Row) -> Value {
        let header_map: Map<String, Value> = headers(row)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        let header_map = Value::Object(header_map);
        let body = row.body.as_ref().map(Value::to_string);
        // Base64 on some sources, as AWS does for bodies it treats as binary.
        let encoded = body
            .as_deref()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b));
        let queries = query_map(row.query);
        match self {
            Source::FunctionUrl | Source::HttpApiStage => {
                let (stage, raw_path) = match self {
                    Source::FunctionUrl => ("$default", row.path.to_owned()),
                    _ => ("v1", format!("/v1{}", row.path)),
                };
                let base64 = matches!(self, Source::FunctionUrl);
                json!({
                    "version": "2.0",
                    "routeKey": "$default",
                    "rawPath": raw_path,
                    "rawQueryString": row.query,
                    "headers": header_map,
                    "queryStringParameters": queries,
                    "requestContext": {
                        "accountId": "123456789012", "apiId": "parity",
                        "domainName": "orders.example.com", "domainPrefix": "orders",
                        "http": {"method": row.method, "path": raw_path, "protocol": "HTTP/1.1",
                                 "sourceIp": "203.0.113.7", "userAgent": "parity"},
                        "requestId": "parity", "routeKey": "$default", "stage": stage,
                        "time": "09/Apr/2025:12:34:56 +0000", "timeEpoch": 1744202096000_u64
                    },
                    "body": if base64 { encoded.clone() } else { body.clone() },
                    "isBase64Encoded": base64 && body.is_some()
                })
            }
            Source::RestApiStage => json!({
                "resource": "/{proxy+}",
                "path": row.path,
                "httpMethod": row.method,
                "headers": header_map,
                "multiValueHeaders": multi(&header_map),
                "queryStringParameters": queries,
                "multiValueQueryStringParameters": multi(&queries),
                "requestContext": {
                    "accountId": "123456789012", "apiId": "parity", "resourceId": "abc",
                    "domainName": "orders.example.com", "httpMethod": row.method,
                    "path": format!("/prod{}", row.path), "protocol": "HTTP/1.1",
                    "requestId": "parity", "resourcePath": "/{proxy+}", "stage": "prod",
                    "identity": {"sourceIp": "203.0.113.7"}
                },
                "body": encoded,
                "isBase64Encoded": body.is_some()
            }),
            Source::Alb => json!({
                "requestContext": {"elb": {"targetGroupArn":
                    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/parity/1"}},
                "httpMethod": row.method,
                "path": row.path,
                "queryStringParameters": if queries.is_null() { json!({}) } else { queries },
                "headers": header_map,
                "body": body.unwrap_or_default(),
                "isBase64Encoded": false
            }),
        }
    }
}

/// Status, compared headers and body, with the parts that legitimately differ masked.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    headers: Vec<(&'static str, Option<String>)>,
    body: Value,
}

fn seen(status: u16, header: impl Fn(&str) -> Option<String>, body: &str) -> Seen {
    let body = match serde_json::from_str::<Value>(body) {
        Ok(mut json) => {
            mask_timestamps(&mut json);
            json
        }
        Err(_) => Value::String(body.to_owned()),
    };
    Seen {
        status,
        headers: COMPARED_HEADERS
            .iter()
            .map(|name| (*name, header(name)))
            .collect(),
        body,
    }
}

fn mask_timestamps(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.contains_key("order_date") {
                map.insert("order_date".to_owned(), json!("<masked>"));
            }
            map.values_mut().for_each(mask_timestamps);
        }
        Value::Array(items) => items.iter_mut().for_each(mask_timestamps),
        _ => {}
    }
}

async fn container_answers() -> Vec<Seen> {
    let app = order_service::router(state().await);
    let mut answers = Vec::new();
    for row in table() {
        let uri = match row.query {
            "" => row.path.to_owned(),
            query => format!("{}?{query}", row.path),
        };
        let mut request = Request::builder().method(row.method).uri(uri);
        for (name, value) in headers(&row) {
            request = request.header(name, value);
        }
        let body = row
            .body
            .as_ref()
            .map_or(Body::empty(), |b| Body::from(b.to_string()));
        let response = app
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        answers.push(seen(
            status,
            |name| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            },
            &String::from_utf8_lossy(&bytes),
        ));
    }
    answers
}

#[tokio::test]
async fn every_event_source_answers_like_the_container() {
    let expected = container_answers().await;
    let rows = table();
    for source in [
        Source::FunctionUrl,
        Source::HttpApiStage,
        Source::RestApiStage,
        Source::Alb,
    ] {
        let mut function = Function::new().await;
        for (row, want) in rows.iter().zip(&expected) {
            let reply = function.invoke(source.event(row)).await;
            // Behind a stage the client's URL carries it, and so must `Location` and `Link`;
            // with it taken off they are the container's.
            let prefix = source.client_prefix();
            let got = seen(
                reply.status,
                |name| {
                    let value = reply.header(name)?.to_owned();
                    Some(match name {
                        "location" => match value.strip_prefix(prefix) {
                            Some(rest) if rest.starts_with('/') => rest.to_owned(),
                            _ => panic!("{source:?}: location {value} lacks {prefix:?}"),
                        },
                        "link" if !prefix.is_empty() => {
                            assert!(value.starts_with(&format!("<{prefix}/")), "{value}");
                            value.replace(&format!("<{prefix}/"), "</")
                        }
                        _ => value,
                    })
                },
                &reply.body,
            );
            assert_eq!(
                &got, want,
                "{source:?} {} {}?{} differs from the container",
                row.method, row.path, row.query
            );
        }
    }
}

#[test]
fn the_table_covers_the_headers_that_matter() {
    // Guards the table against edits that would leave a compared header untested.
    let rows = table();
    assert!(rows.iter().any(|r| r.method == "DELETE"), "405 with allow");
    assert!(
        rows.iter().any(|r| r.method == "POST" && !r.authorized),
        "401 with www-authenticate"
    );
    assert!(
        rows.iter().any(|r| r.method == "POST" && r.authorized),
        "201 with location"
    );
    assert!(rows.iter().any(|r| r.query.starts_with("limit=1")), "link");
}
