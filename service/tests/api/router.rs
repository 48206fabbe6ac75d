//! The HTTP contract, through `router(state)` in-process.

use axum::http::{Method, StatusCode};
use order_service::router;
use serde_json::{json, Value};

use crate::support::{create, get, local_app, new_order, request, send, state_with};

#[tokio::test]
async fn welcome_names_the_environment() {
    let reply = get(&local_app().await, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"message": "Welcome to the Order Service API - local"})
    );
    let staging = router(state_with(&[("ENVIRONMENT", "staging")]).await);
    assert_eq!(
        get(&staging, "/").await.json()["message"],
        "Welcome to the Order Service API - staging"
    );
}

#[tokio::test]
async fn health_and_ready_answer_ok() {
    let app = local_app().await;
    let health = get(&app, "/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), json!({"status": "OK"}));
    assert_eq!(get(&app, "/ready").await.status, StatusCode::OK);
}

#[tokio::test]
async fn ready_turns_503_while_draining() {
    let state = state_with(&[]).await;
    let app = router(state.clone());
    state.readiness.start_draining();
    get(&app, "/ready")
        .await
        .problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&app, "/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn sample_orders_match_the_python_version() {
    let reply = get(&local_app().await, "/orders").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let orders = reply.json();
    let orders = orders.as_array().expect("a bare JSON array");
    let summary: Vec<_> = orders
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap_or_default().to_owned(),
                o["customer_name"].as_str().unwrap_or_default().to_owned(),
                o["status"].as_str().unwrap_or_default().to_owned(),
                o["total_amount"].to_string(),
            )
        })
        .collect();
    let expected = [
        ("1", "John Doe", "DELIVERED", "129.99"),
        ("2", "Jane Smith", "PROCESSING", "75.5"),
        ("3", "Bob Wilson", "PENDING", "199.97"),
    ];
    assert_eq!(summary.len(), 3);
    for (got, want) in summary.iter().zip(expected) {
        assert_eq!(
            (
                got.0.as_str(),
                got.1.as_str(),
                got.2.as_str(),
                got.3.as_str()
            ),
            want
        );
    }
    let first = &orders[0];
    assert_eq!(first["tracking_number"], "1Z999AA1234567890");
    assert_eq!(first["shipping_address"], "123 Main St, New York, NY 10001");
    assert_eq!(
        first["items"],
        json!([
            {"product_id": 1, "name": "Laptop Stand", "quantity": 1, "price": 29.99},
            {"product_id": 2, "name": "Wireless Mouse", "quantity": 1, "price": 100.0}
        ])
    );
    assert_eq!(orders[1]["tracking_number"], Value::Null);
    let date = first["order_date"].as_str().expect("order_date");
    assert!(chrono::DateTime::parse_from_rfc3339(date).is_ok(), "{date}");
}

#[tokio::test]
async fn sample_data_can_be_turned_off() {
    let app = router(state_with(&[("SEED_SAMPLE_DATA", "false")]).await);
    assert_eq!(get(&app, "/orders").await.json(), json!([]));
}

#[tokio::test]
async fn missing_order_is_404_with_the_fastapi_detail() {
    let app = local_app().await;
    for id in ["999", "abc", "0", "99999999999999999999999"] {
        let body = get(&app, &format!("/orders/{id}"))
            .await
            .problem(StatusCode::NOT_FOUND);
        assert_eq!(body["detail"], "Order not found");
    }
}

/// The id is read from the path as a path parameter is: percent-decoded, so `%31` is order
/// 1; a segment that decodes to no text is no order.
#[tokio::test]
async fn a_percent_encoded_id_names_the_same_order() {
    let app = local_app().await;
    let plain = get(&app, "/orders/1").await;
    let encoded = get(&app, "/orders/%31").await;
    assert_eq!(encoded.status, StatusCode::OK);
    assert_eq!(encoded.body, plain.body);
    let body = get(&app, "/orders/%FF")
        .await
        .problem(StatusCode::NOT_FOUND);
    assert_eq!(body["detail"], "Order not found");
}

#[tokio::test]
async fn create_returns_201_location_and_exact_total() {
    let app = local_app().await;
    let body = new_order("Ada Lovelace");
    let reply = send(&app, request(Method::POST, "/orders", &[], Some(&body))).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let order = reply.json();
    assert_eq!(order["id"], "4");
    assert_eq!(reply.header("location"), Some("/orders/4"));
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["tracking_number"], Value::Null);
    // 2 × 19.99 + 3 × 0.10 = 40.28 exactly (binary floats would say 40.279999…).
    assert_eq!(order["total_amount"].to_string(), "40.28");
    let fetched = get(&app, "/orders/4").await;
    assert_eq!(fetched.json(), order);
}

#[tokio::test]
async fn invalid_orders_get_field_level_422() {
    let app = local_app().await;
    let cases = [
        (
            json!({"customer_name": "", "items": [], "shipping_address": "x"}),
            vec!["customer_name", "items"],
        ),
        (
            json!({"customer_name": "A", "shipping_address": "x",
                   "items": [{"product_id": 1, "name": "n", "quantity": 0, "price": 1.234}]}),
            vec!["items[0].quantity", "items[0].price"],
        ),
        (
            json!({"customer_name": "A", "shipping_address": "x",
                   "items": [{"product_id": 1, "name": "n", "quantity": "two", "price": 1}]}),
            vec!["items[0].quantity"],
        ),
        (
            json!({"customer_name": "A", "shipping_address": "x",
                   "items": [{"product_id": 1.5, "name": "n", "quantity": 1, "price": 1}]}),
            vec!["items[0].product_id"],
        ),
        (json!({"customer_name": "A", "items": []}), vec!["body"]),
        (json!("not an object"), vec!["body"]),
    ];
    for (body, fields) in cases {
        let reply = send(&app, request(Method::POST, "/orders", &[], Some(&body))).await;
        let problem = reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
        let got: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e["field"].as_str().unwrap_or_default())
            .collect();
        for field in fields {
            assert!(got.contains(&field), "{field} missing in {problem}");
        }
    }
    assert_eq!(
        get(&app, "/orders").await.json().as_array().map(Vec::len),
        Some(3)
    );
}

#[tokio::test]
async fn malformed_json_wrong_type_and_oversized_bodies_are_problems() {
    let app = local_app().await;
    let malformed = axum::http::Request::post("/orders")
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{\"customer_name\": "))
        .expect("request");
    send(&app, malformed).await.problem(StatusCode::BAD_REQUEST);

    let text = axum::http::Request::post("/orders")
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("hello"))
        .expect("request");
    send(&app, text)
        .await
        .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let big = json!({"customer_name": "x".repeat(70_000), "items": [], "shipping_address": "y"});
    send(&app, request(Method::POST, "/orders", &[], Some(&big)))
        .await
        .problem(StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_route_and_wrong_method_are_problems() {
    let app = local_app().await;
    get(&app, "/nope").await.problem(StatusCode::NOT_FOUND);
    let reply = send(&app, request(Method::DELETE, "/orders/1", &[], None)).await;
    reply.problem(StatusCode::METHOD_NOT_ALLOWED);
    assert!(reply.header("allow").is_some_and(|a| a.contains("PATCH")));
}

#[tokio::test]
async fn requests_past_the_timeout_get_504() {
    // A 1 ms budget is shorter than any request; the body must still be a problem.
    let app = router(state_with(&[("REQUEST_TIMEOUT_MS", "1")]).await);
    let slow = axum::http::Request::post("/orders")
        .header("content-type", "application/json")
        .body(slow_body())
        .expect("request");
    send(&app, slow).await.problem(StatusCode::GATEWAY_TIMEOUT);
}

/// A body that arrives after 200 ms.
fn slow_body() -> axum::body::Body {
    axum::body::Body::from_stream(futures_util::stream::once(async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{}"))
    }))
}

#[tokio::test]
async fn idempotency_key_replays_the_first_result() {
    let app = local_app().await;
    let body = new_order("Grace Hopper");
    let key = [("idempotency-key", "c0ffee-1")];
    let first = send(&app, request(Method::POST, "/orders", &key, Some(&body))).await;
    let retry = send(&app, request(Method::POST, "/orders", &key, Some(&body))).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.json(), retry.json());
    assert_eq!(
        get(&app, "/orders").await.json().as_array().map(Vec::len),
        Some(4)
    );

    let other = new_order("Someone Else");
    let reused = send(&app, request(Method::POST, "/orders", &key, Some(&other))).await;
    let problem = reused.problem(StatusCode::CONFLICT);
    assert!(problem["detail"]
        .as_str()
        .is_some_and(|d| d.contains("Idempotency-Key")));
}

#[tokio::test]
async fn pagination_follows_link_headers_through_every_order() {
    let app = router(state_with(&[("SEED_SAMPLE_DATA", "false")]).await);
    for n in 0..7 {
        create(&app, &new_order(&format!("Customer {n}"))).await;
    }
    let mut seen = Vec::new();
    let mut next = Some("/orders?limit=3".to_owned());
    while let Some(uri) = next.take() {
        let reply = get(&app, &uri).await;
        assert_eq!(reply.status, StatusCode::OK);
        seen.extend(reply.ids());
        next = reply.next_link();
    }
    assert_eq!(seen, ["1", "2", "3", "4", "5", "6", "7"]);
    assert!(get(&app, "/orders").await.header("link").is_none());
}

/// A client that reached the end keeps the last page's `Order-Cursor` and, later, gets
/// exactly the orders created since; the plain id of the last order seen (what clients of
/// earlier versions send) still works as a cursor.
#[tokio::test]
async fn the_last_page_hands_out_a_cursor_to_resume_from() {
    let app = router(state_with(&[("SEED_SAMPLE_DATA", "false")]).await);
    let first = create(&app, &new_order("First")).await;
    let last_page = get(&app, "/orders?limit=10").await;
    assert!(last_page.header("link").is_none());
    let cursor = last_page
        .header("order-cursor")
        .expect("Order-Cursor")
        .to_owned();
    let later = create(&app, &new_order("Later")).await;
    let resumed = get(&app, &format!("/orders?cursor={cursor}")).await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert_eq!(resumed.ids(), [later.as_str()]);
    let legacy = get(&app, &format!("/orders?cursor={first}")).await.json();
    assert_eq!(legacy.as_array().map(Vec::len), Some(1));
    assert_eq!(legacy[0]["id"], later.as_str());
}

#[tokio::test]
async fn bad_page_parameters_are_422() {
    let app = local_app().await;
    for uri in [
        "/orders?limit=0",
        "/orders?limit=501",
        "/orders?limit=x",
        "/orders?cursor=%%%",
    ] {
        get(&app, uri)
            .await
            .problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    get(&app, "/orders?cursor=bm9wZQ")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
}

async fn patch(app: &order_service::App, id: &str, body: Value) -> crate::support::Reply {
    send(
        app,
        request(Method::PATCH, &format!("/orders/{id}"), &[], Some(&body)),
    )
    .await
}

#[tokio::test]
async fn status_follows_the_state_machine() {
    let app = local_app().await;
    // Order 3 is PENDING.
    let reply = patch(&app, "3", json!({"status": "PROCESSING"})).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["status"], "PROCESSING");
    let reply = patch(
        &app,
        "3",
        json!({"status": "SHIPPED", "tracking_number": "TRK-1"}),
    )
    .await;
    assert_eq!(reply.json()["tracking_number"], "TRK-1");
    let reply = patch(&app, "3", json!({"status": "CANCELLED"})).await;
    let problem = reply.problem(StatusCode::CONFLICT);
    assert_eq!(
        problem["detail"],
        "cannot change status from SHIPPED to CANCELLED"
    );
    assert_eq!(
        patch(&app, "3", json!({"status": "DELIVERED"}))
            .await
            .status,
        StatusCode::OK
    );
    // Order 1 is DELIVERED: nothing leaves it.
    patch(&app, "1", json!({"status": "PENDING"}))
        .await
        .problem(StatusCode::CONFLICT);
    // Order 2 is PROCESSING: it may be cancelled.
    assert_eq!(
        patch(&app, "2", json!({"status": "CANCELLED"}))
            .await
            .status,
        StatusCode::OK
    );
    for id in ["999", "abc", "0"] {
        patch(&app, id, json!({"status": "SHIPPED"}))
            .await
            .problem(StatusCode::NOT_FOUND);
    }
    patch(&app, "2", json!({"status": "LOST"}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn writes_need_a_key_outside_local() {
    let app = router(state_with(&[("ENVIRONMENT", "staging")]).await);
    let body = new_order("Mallory");
    let reply = send(&app, request(Method::POST, "/orders", &[], Some(&body))).await;
    reply.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    // Reads are customer data too (tests/api/keys.rs).
    get(&app, "/orders/1")
        .await
        .problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn configured_keys_guard_writes() {
    let app = router(state_with(&[("API_KEYS", "k-one,k-two")]).await);
    let body = new_order("Trent");
    for (auth, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("Bearer wrong"), StatusCode::UNAUTHORIZED),
        (Some("k-one"), StatusCode::UNAUTHORIZED),
        (Some("Bearer k-two"), StatusCode::CREATED),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let reply = send(
            &app,
            request(Method::POST, "/orders", &headers, Some(&body)),
        )
        .await;
        assert_eq!(reply.status, status, "{auth:?}");
    }
    let headers = [("authorization", "Bearer k-one")];
    let change = json!({"status": "PROCESSING"});
    let unauthorised = send(
        &app,
        request(Method::PATCH, "/orders/3", &[], Some(&change)),
    )
    .await;
    assert_eq!(unauthorised.status, StatusCode::UNAUTHORIZED);
    let reply = send(
        &app,
        request(Method::PATCH, "/orders/3", &headers, Some(&change)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn request_id_is_generated_or_propagated() {
    let app = local_app().await;
    let generated = get(&app, "/health").await;
    assert!(generated
        .header("x-request-id")
        .is_some_and(|id| id.len() >= 32));
    let given = send(
        &app,
        request(
            Method::GET,
            "/orders/999",
            &[("x-request-id", "trace-me-42")],
            None,
        ),
    )
    .await;
    assert_eq!(given.header("x-request-id"), Some("trace-me-42"));
}

#[tokio::test]
async fn openapi_document_and_docs_page_are_served() {
    let app = local_app().await;
    let doc = get(&app, "/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in ["/", "/health", "/ready", "/orders", "/orders/{id}"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["paths"]["/orders/{id}"]["patch"].is_object());
    assert!(doc["components"]["schemas"]["Order"].is_object());
    let page = get(&app, "/docs").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    // The page carries the generated document itself, so it shows what the code serves.
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains("Order Service API") && html.contains("/orders/{id}"),
        "{html}"
    );
}

#[tokio::test]
async fn metrics_label_routes_by_template_and_are_not_on_the_api_router() {
    let state = state_with(&[]).await;
    let app = router(state.clone());
    get(&app, "/orders/1").await;
    get(&app, "/orders/2").await;
    get(&app, "/no/such/path").await;
    let text = state.metrics.render();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/orders/{id}",status="200"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#));
    assert!(!text.contains("/orders/1\""));
    assert!(text.contains(r#"build_info{target="container",version=""#));
    get(&app, "/metrics").await.problem(StatusCode::NOT_FOUND);
}

/// The document declares the key's pattern, and the server accepts exactly that pattern:
/// 1 to 255 characters from `!` to `~`.
#[tokio::test]
async fn idempotency_key_pattern_is_declared_and_enforced() {
    let app = local_app().await;
    let doc = get(&app, "/openapi.json").await.json();
    let params = doc["paths"]["/orders"]["post"]["parameters"]
        .as_array()
        .expect("parameters")
        .clone();
    let key = params
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("Idempotency-Key declared");
    assert_eq!(key["in"], "header");
    assert_eq!(key["schema"]["pattern"], "^[!-~]{1,255}$", "{key}");
    let longest = "k".repeat(255);
    let too_long = "k".repeat(256);
    for (value, accepted) in [
        ("a", true),
        ("!~{}[]", true),
        (longest.as_str(), true),
        (too_long.as_str(), false),
        ("two words", false),
        ("tab\tinside", false),
        (" padded", false),
    ] {
        let headers = [("idempotency-key", value)];
        let body = new_order(&format!("Key {}", value.len()));
        let reply = send(
            &app,
            request(Method::POST, "/orders", &headers, Some(&body)),
        )
        .await;
        match accepted {
            true => assert_eq!(reply.status, StatusCode::CREATED, "{value:?}"),
            false => {
                reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
            }
        }
    }
}

#[tokio::test]
async fn patch_honours_if_match_and_repeats_answer_200() {
    let app = local_app().await;
    // Order 3 is PENDING.
    let read = get(&app, "/orders/3").await;
    let etag = read.header("etag").expect("GET carries an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let send_patch = |if_match: Option<&str>, body: Value| {
        let if_match = if_match.map(str::to_owned);
        let app = app.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                if_match.iter().map(|v| ("if-match", v.as_str())).collect();
            send(
                &app,
                request(Method::PATCH, "/orders/3", &headers, Some(&body)),
            )
            .await
        }
    };
    let processing = send_patch(Some(&etag), json!({"status": "PROCESSING"})).await;
    assert_eq!(processing.status, StatusCode::OK);
    let new_etag = processing
        .header("etag")
        .expect("PATCH carries an ETag")
        .to_owned();
    assert_ne!(new_etag, etag);
    assert_eq!(
        get(&app, "/orders/3").await.header("etag"),
        Some(new_etag.as_str())
    );

    // The same PATCH with the same If-Match, retried after its answer was lost: the order
    // shows the change one version on, so 200 (RFC 9110, section 13.1.1), not 412.
    let retried = send_patch(Some(&etag), json!({"status": "PROCESSING"})).await;
    assert_eq!(retried.status, StatusCode::OK);
    assert_eq!(retried.header("etag"), Some(new_etag.as_str()));
    assert_eq!(retried.json(), processing.json());
    // The same change again (a retry whose first answer was lost): 200 and the order.
    let repeat = send_patch(None, json!({"status": "PROCESSING"})).await;
    assert_eq!(repeat.status, StatusCode::OK);
    assert_eq!(repeat.json(), processing.json());
    // A stale version is refused before anything is decided, even for a repeat.
    let stale = send_patch(Some(&etag), json!({"status": "SHIPPED"})).await;
    let problem = stale.problem(StatusCode::PRECONDITION_FAILED);
    assert!(problem["detail"]
        .as_str()
        .is_some_and(|d| d.contains("If-Match")));
    assert_eq!(get(&app, "/orders/3").await.json()["status"], "PROCESSING");
    // A weak tag never matches; `*` and a list containing the current tag do.
    let weak = format!("W/{new_etag}");
    send_patch(Some(&weak), json!({"status": "SHIPPED"}))
        .await
        .problem(StatusCode::PRECONDITION_FAILED);
    let list = format!("\"other\", {new_etag}");
    let shipped = send_patch(
        Some(&list),
        json!({"status": "SHIPPED", "tracking_number": "TRK-9"}),
    )
    .await;
    assert_eq!(shipped.status, StatusCode::OK);
    // Repeating with the tracking number it already has is the same change ...
    let repeat = send_patch(
        Some("*"),
        json!({"status": "SHIPPED", "tracking_number": "TRK-9"}),
    )
    .await;
    assert_eq!(repeat.status, StatusCode::OK);
    // ... another tracking number is a different change, which SHIPPED → SHIPPED is not.
    let other = send_patch(
        None,
        json!({"status": "SHIPPED", "tracking_number": "TRK-10"}),
    )
    .await;
    other.problem(StatusCode::CONFLICT);
    send_patch(Some("*"), json!({"status": "PROCESSING"}))
        .await
        .problem(StatusCode::CONFLICT);
}

#[tokio::test]
async fn idempotency_keys_belong_to_the_credential_and_replay_the_first_answer() {
    let app = router(state_with(&[("ENVIRONMENT", "staging"), ("API_KEYS", "k-one,k-two")]).await);
    let post = |auth: &'static str, body: Value| {
        let app = app.clone();
        async move {
            let headers = [("authorization", auth), ("idempotency-key", "order-42")];
            send(
                &app,
                request(Method::POST, "/orders", &headers, Some(&body)),
            )
            .await
        }
    };
    let one = post("Bearer k-one", new_order("Client One")).await;
    let two = post("Bearer k-two", new_order("Client Two")).await;
    assert_eq!(
        (one.status, two.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_ne!(
        one.json()["id"],
        two.json()["id"],
        "two clients, two orders"
    );
    assert_eq!(two.header("idempotent-replayed"), None);

    // The order moves on; a retry still gets the first answer, byte for byte.
    let path = one.header("location").expect("location").to_owned();
    let headers = [("authorization", "Bearer k-one")];
    let change = json!({"status": "PROCESSING"});
    let changed = send(&app, request(Method::PATCH, &path, &headers, Some(&change))).await;
    assert_eq!(changed.status, StatusCode::OK);
    let retry = post("Bearer k-one", new_order("Client One")).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.body, one.body);
    assert_eq!(retry.header("location"), Some(path.as_str()));
}

#[tokio::test]
async fn a_full_memory_store_answers_a_clear_problem() {
    let app = router(state_with(&[("MEMORY_MAX_ORDERS", "4")]).await);
    let post = |name: &str| {
        let (app, body) = (app.clone(), new_order(name));
        async move { send(&app, request(Method::POST, "/orders", &[], Some(&body))).await }
    };
    // Three sample orders and one more fill it.
    assert_eq!(post("Fourth").await.status, StatusCode::CREATED);
    let full = post("Fifth").await;
    let problem = full.problem(StatusCode::INSUFFICIENT_STORAGE);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("full")),
        "{problem}"
    );
    // Reads and status changes go on.
    assert_eq!(
        get(&app, "/orders?limit=500")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    let change = json!({"status": "PROCESSING"});
    let reply = send(
        &app,
        request(Method::PATCH, "/orders/3", &[], Some(&change)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn docs_page_loads_only_its_own_pinned_script_under_a_strict_csp() {
    let app = local_app().await;
    let page = get(&app, "/docs").await;
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = String::from_utf8_lossy(&page.body).into_owned();
    // Relative paths, so the page also works behind an API Gateway stage.
    // Named by their content (tests/api/docs_cache.rs).
    assert!(
        html.contains("<script src=\"docs/scalar-loader.")
            && html.contains(".js\" integrity=\"sha384-")
            && html.contains("[\"docs/scalar-part."),
        "{html}"
    );
    assert!(!html.contains("https://"), "no other host: {html}");
    let script = get(&app, "/docs/scalar.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(
        script.body.len() > 1_000_000,
        "the whole bundle is embedded"
    );
}

#[tokio::test]
async fn product_ids_beyond_json_safe_integers_are_422() {
    let app = local_app().await;
    for id in [json!(9_007_199_254_740_992_i64), json!(0), json!(-1)] {
        let mut body = new_order("Big Id");
        body["items"][0]["product_id"] = id.clone();
        let reply = send(&app, request(Method::POST, "/orders", &[], Some(&body))).await;
        let problem = reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            problem["errors"][0]["field"], "items[0].product_id",
            "{id}: {problem}"
        );
    }
    let mut body = new_order("Largest Id");
    body["items"][0]["product_id"] = json!(9_007_199_254_740_991_i64);
    let reply = send(&app, request(Method::POST, "/orders", &[], Some(&body))).await;
    assert_eq!(reply.status, StatusCode::CREATED);
}
