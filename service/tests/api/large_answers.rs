//! Large answers: pages bounded in bytes, answers compressed as negotiated, request bodies
//! that say what they are.

use std::convert::Infallible;
use std::io::{Read, Write};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use order_service::{metrics_router, router};
use serde_json::Value;
use tower::Service;

use crate::support::{create, get, request, send, state_with, Reply};

/// An order whose JSON is about `items` × 60 bytes.
fn order_with_items(customer: &str, items: usize) -> Value {
    let items: Vec<Value> = (0..items)
        .map(|i| serde_json::json!({"product_id": i + 1, "name": "Item ü", "quantity": 1, "price": 1.5}))
        .collect();
    serde_json::json!({"customer_name": customer, "items": items, "shipping_address": "1 Way"})
}

/// GET `uri` with `Accept-Encoding: accept`.
async fn get_accepting<S>(app: &order_service::App<S>, uri: &str, accept: &str) -> Reply
where
    order_service::App<S>: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    send(
        app,
        request(Method::GET, uri, &[("accept-encoding", accept)], None),
    )
    .await
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    GzDecoder::new(body).read_to_end(&mut plain).expect("gzip");
    plain
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(body).expect("gzip");
    encoder.finish().expect("gzip")
}

/// A page stops before the order that would take it past `PAGE_MAX_BYTES`: fewer orders
/// than `limit`, with a next link and `Order-Cursor` at the first order left out; walking the
/// links sees every order once.
#[tokio::test]
async fn a_page_stops_before_the_order_that_would_pass_the_byte_budget() {
    let app =
        router(state_with(&[("SEED_SAMPLE_DATA", "false"), ("PAGE_MAX_BYTES", "4096")]).await);
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(create(&app, &order_with_items(&format!("C{n}"), 20)).await);
    }
    let mut seen = Vec::new();
    let mut next = Some("/orders?limit=500".to_owned());
    let mut pages = 0;
    while let Some(uri) = next.take() {
        let reply = get(&app, &uri).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.body.len() <= 4096, "{} bytes", reply.body.len());
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str())
        );
        let orders = reply.ids();
        assert!(!orders.is_empty());
        seen.extend(orders);
        next = reply.next_link();
        if let Some(next) = &next {
            let cursor = reply.header("order-cursor").expect("Order-Cursor");
            assert!(next.ends_with(&format!("cursor={cursor}")), "{next}");
            // Short of the limit only because the next order would not have fitted.
            let following = get(&app, &format!("/orders/{}", ids[seen.len()])).await;
            assert!(reply.body.len() + following.body.len() + 1 > 4096);
        }
        pages += 1;
    }
    assert_eq!(seen, ids);
    assert!(pages >= 3, "{pages} pages");
}

/// An order larger than the budget is served alone, so a walk always moves on.
#[tokio::test]
async fn an_order_larger_than_the_budget_is_served_alone() {
    let app =
        router(state_with(&[("SEED_SAMPLE_DATA", "false"), ("PAGE_MAX_BYTES", "1024")]).await);
    let big = create(&app, &order_with_items("Big", 40)).await;
    let small = create(&app, &order_with_items("Small", 1)).await;
    let first = get(&app, "/orders").await;
    assert!(first.body.len() > 1024);
    assert_eq!(first.json()[0]["id"], big.as_str());
    assert_eq!(first.json().as_array().map(Vec::len), Some(1));
    let second = get(&app, &first.next_link().expect("next")).await;
    assert_eq!(second.json()[0]["id"], small.as_str());
    assert!(second.next_link().is_none());
}

/// gzip or br as the client prefers, the same JSON once decoded, `Vary: Accept-Encoding`
/// whether compressed or not; answers below `COMPRESSION_MIN_BYTES` go as they are.
#[tokio::test]
async fn answers_are_compressed_as_the_client_accepts() {
    let app = router(state_with(&[("SEED_SAMPLE_DATA", "false")]).await);
    for n in 0..30 {
        create(&app, &order_with_items(&format!("C{n}"), 10)).await;
    }
    let list = |accept: &'static str| {
        let app = app.clone();
        async move { get_accepting(&app, "/orders?limit=500", accept).await }
    };
    let plain = get(&app, "/orders?limit=500").await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("accept-encoding"));

    let gzipped = list("gzip, deflate, br;q=0.5").await;
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    assert_eq!(gzipped.header("vary"), Some("accept-encoding"));
    assert_eq!(gunzip(&gzipped.body), plain.body);
    assert!(
        gzipped.body.len() * 4 < plain.body.len(),
        "{} bytes",
        gzipped.body.len()
    );
    // The links survive compression.
    assert_eq!(gzipped.header("order-cursor"), plain.header("order-cursor"));

    let brotli = list("gzip;q=0.8, br").await;
    assert_eq!(brotli.header("content-encoding"), Some("br"));
    assert!(brotli.body.len() * 4 < plain.body.len());

    assert_eq!(list("identity").await.header("content-encoding"), None);

    // One small order: below the threshold, as it is, still varying.
    let id = create(&app, &order_with_items("Small", 1)).await;
    let one = get_accepting(&app, &format!("/orders/{id}"), "gzip, br").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.header("content-encoding"), None);
    assert_eq!(one.header("vary"), Some("accept-encoding"));
    assert!(one.json()["id"].is_string());
}

/// `COMPRESSION_MIN_BYTES=0` compresses even the smallest answer.
#[tokio::test]
async fn the_threshold_is_a_setting() {
    let app = router(state_with(&[("COMPRESSION_MIN_BYTES", "0")]).await);
    let one = get_accepting(&app, "/orders/1", "gzip").await;
    assert_eq!(one.header("content-encoding"), Some("gzip"));
    let order: Value = serde_json::from_slice(&gunzip(&one.body)).expect("json");
    assert_eq!(order["id"], "1");
}

/// Prometheus asks for gzip; the metrics port answers with it.
#[tokio::test]
async fn metrics_are_compressed_when_the_scraper_asks() {
    let state = state_with(&[]).await;
    let metrics = metrics_router(state.clone());
    let plain = get(&metrics, "/metrics").await;
    assert_eq!(plain.status, StatusCode::OK);
    let scrape = get_accepting(&metrics, "/metrics", "gzip").await;
    assert_eq!(scrape.header("content-encoding"), Some("gzip"));
    let text = String::from_utf8(gunzip(&scrape.body)).expect("text");
    assert!(text.contains("build_info{"), "{text}");
}

/// A body in a coding the service does not decode: 415 problem+json naming what it does.
#[tokio::test]
async fn a_body_in_an_unknown_coding_is_refused_with_what_is_accepted() {
    let app = router(state_with(&[]).await);
    let body = order_with_items("Zed", 1);
    for coding in ["br", "zstd", "compress", "gzip, br"] {
        let reply = send(
            &app,
            request(
                Method::POST,
                "/orders",
                &[("content-encoding", coding)],
                Some(&body),
            ),
        )
        .await;
        let problem = reply.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Content-Encoding")));
        assert_eq!(reply.header("accept-encoding"), Some("gzip"), "{coding}");
    }
    // Nothing was created.
    let list = get(&app, "/orders?limit=500").await.json();
    assert!(list
        .as_array()
        .expect("array")
        .iter()
        .all(|o| o["customer_name"] != "Zed"));
}

/// gzip bodies are decoded; what is labelled gzip but is not, is refused.
#[tokio::test]
async fn a_gzip_body_is_decoded() {
    let app = router(state_with(&[]).await);
    let json = order_with_items("Gzipped", 2).to_string();
    let post = |body: Vec<u8>| {
        axum::http::Request::builder()
            .method(Method::POST)
            .uri("/orders")
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(axum::body::Body::from(body))
            .expect("request")
    };
    let created = send(&app, post(gzip(json.as_bytes()))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.json()["customer_name"], "Gzipped");
    let mislabelled = send(&app, post(json.into_bytes())).await;
    assert!(
        mislabelled.status.is_client_error(),
        "{}",
        mislabelled.status
    );
    assert_eq!(
        mislabelled.header("content-type"),
        Some("application/problem+json")
    );
}

/// The body limit counts decoded bytes: 10 KB of gzip that inflates to 10 MB is a 413.
#[tokio::test]
async fn a_gzip_body_that_inflates_past_the_limit_is_413() {
    let app = router(state_with(&[]).await);
    let mut json = br#"{"customer_name":""#.to_vec();
    json.resize(json.len() + 10_000_000, b'a');
    json.extend_from_slice(br#"","items":[],"shipping_address":"x"}"#);
    let bomb = gzip(&json);
    assert!(bomb.len() < 65_536, "{} bytes", bomb.len());
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/orders")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("content-length", bomb.len())
        .body(axum::body::Body::from(bomb))
        .expect("request");
    send(&app, request)
        .await
        .problem(StatusCode::PAYLOAD_TOO_LARGE);
}

/// Small orders are joined into one chunk and large ones sent from their own JSON: the page is
/// one valid array, in order, of exactly `Content-Length` bytes.
#[tokio::test]
async fn a_page_of_small_and_large_orders_is_one_array() {
    let app = router(state_with(&[("SEED_SAMPLE_DATA", "false")]).await);
    let mut ids = Vec::new();
    for n in 0..9 {
        let items = [1, 100, 1][n % 3];
        ids.push(create(&app, &order_with_items(&format!("C{n}"), items)).await);
    }
    let page = get(&app, "/orders?limit=500").await;
    assert_eq!(
        page.header("content-length"),
        Some(page.body.len().to_string().as_str())
    );
    assert_eq!(page.ids(), ids);
}
