//! Helpers shared by the integration tests.

pub mod binary;
pub mod moto;
pub mod postgres;

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use order_service::App;
use order_service::{build_state, router, AppState, Config, Target};
use serde_json::Value;
use tower::{Service, ServiceExt};

/// State built exactly as the shells build it, from the given variables.
/// Unless the test says otherwise, it plays a developer's machine (`ENVIRONMENT=local`).
pub async fn state_with(vars: &[(&str, &str)]) -> AppState {
    let mut vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.entry("ENVIRONMENT".into())
        .or_insert_with(|| "local".into());
    let config = Config::from_vars(&vars).expect("test config is valid");
    build_state(config, Target::Container)
        .await
        .expect("state builds")
}

/// The router over a local memory store with the sample data.
pub async fn local_app() -> App {
    router(state_with(&[]).await)
}

/// A response as a client sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The ids of the orders in a page, in order.
    pub fn ids(&self) -> Vec<String> {
        self.json()
            .as_array()
            .expect("array")
            .iter()
            .map(|o| o["id"].as_str().expect("id").to_owned())
            .collect()
    }

    /// The target of the `Link: <…>; rel="next"` header, if the page has one.
    pub fn next_link(&self) -> Option<String> {
        self.header("link").map(|link| {
            assert!(link.ends_with("; rel=\"next\""), "{link}");
            link.trim_start_matches('<')
                .split('>')
                .next()
                .expect("uri")
                .to_owned()
        })
    }

    /// Asserts an RFC 9457 problem with this status and returns its body.
    pub fn problem(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let body = self.json();
        assert_eq!(body["status"], status.as_u16());
        assert!(body["type"].is_string() && body["title"].is_string());
        assert!(body["detail"].is_string(), "{body}");
        body
    }
}

/// Sends one request through the router (the API's or the metrics port's), no port involved.
pub async fn send<S>(app: &App<S>, request: Request<Body>) -> Reply
where
    App<S>: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    let response = app.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// The id `text` names, for the store's methods.
pub fn order_id(text: &str) -> order_service::domain::OrderId {
    order_service::domain::OrderId::parse(text).expect("an order id")
}

/// Creates an order through the router; returns its id.
pub async fn create(app: &App, body: &Value) -> String {
    let reply = send(app, request(Method::POST, "/orders", &[], Some(body))).await;
    assert_eq!(
        reply.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["id"].as_str().expect("id").to_owned()
}

pub async fn get<S>(app: &App<S>, uri: &str) -> Reply
where
    App<S>: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    send(app, request(Method::GET, uri, &[], None)).await
}

/// A request with optional JSON body and extra headers.
pub fn request(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    json: Option<&Value>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match json {
        Some(json) => {
            builder = builder.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    builder.body(body).expect("valid request")
}

/// A valid order body.
pub fn new_order(customer: &str) -> Value {
    serde_json::json!({
        "customer_name": customer,
        "items": [
            {"product_id": 7, "name": "Desk Lamp", "quantity": 2, "price": 19.99},
            {"product_id": 8, "name": "Bulb", "quantity": 3, "price": 0.1}
        ],
        "shipping_address": "1 Test Way, Springfield"
    })
}
