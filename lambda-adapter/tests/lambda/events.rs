//! Every way AWS delivers HTTP to the function, from event fixtures shaped like AWS's
//! documented events, through the handler and back into the response each source expects.

use serde_json::{json, Value};

use crate::support::{assert_valid_emf, fixture, Function};

#[tokio::test]
async fn rest_api_with_a_stage_routes_to_the_order() {
    let mut function = Function::new().await;
    let reply = function
        .invoke_with_id(fixture("rest_api_stage_get_order.json"), "rest-id-1")
        .await;

    assert_eq!(reply.status, 200, "{:?}", reply.raw);
    // REST API responses carry headers only in multiValueHeaders (no duplicates).
    assert_eq!(reply.raw["headers"], json!({}));
    assert_eq!(
        reply.raw["multiValueHeaders"]["content-type"],
        json!(["application/json"])
    );
    assert_eq!(reply.raw["isBase64Encoded"], false);
    let order = reply.json();
    assert_eq!(order["id"], "1");
    assert_eq!(order["customer_name"], "John Doe");
    assert_eq!(order["total_amount"], json!(129.99));
    // No client request id: the Lambda request id is the one the caller sees.
    assert_eq!(reply.header("x-request-id"), Some("rest-id-1"));
}

#[tokio::test]
async fn rest_api_write_with_a_stage_and_a_key_changes_the_status() {
    let mut function = Function::new().await;
    let reply = function
        .invoke(fixture("rest_api_stage_patch_order.json"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["status"], "PROCESSING");
}

#[tokio::test]
async fn rest_api_stage_named_like_a_route_is_not_stripped_from_the_route() {
    let mut event = fixture("rest_api_stage_get_order.json");
    event["requestContext"]["stage"] = json!("orders");
    let reply = Function::new().await.invoke(event).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["id"], "1");
}

#[tokio::test]
async fn http_api_default_stage_passes_the_query_and_returns_the_link() {
    let mut function = Function::new().await;
    let reply = function
        .invoke(fixture("http_api_default_list_orders.json"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.raw["isBase64Encoded"], false);
    assert_eq!(
        reply.raw["headers"]["content-type"],
        json!("application/json")
    );
    let ids: Vec<Value> = reply
        .json()
        .as_array()
        .expect("a bare array")
        .iter()
        .map(|o| o["id"].clone())
        .collect();
    assert_eq!(ids, [json!("1"), json!("2")]);
    let link = reply.header("link").expect("a next link");
    assert!(
        link.starts_with("</orders?limit=2&cursor=") && link.ends_with(">; rel=\"next\""),
        "{link}"
    );
}

#[tokio::test]
async fn http_api_named_stage_is_stripped_before_routing() {
    let mut function = Function::new().await;
    let missing = function
        .invoke(fixture("http_api_stage_missing_order.json"))
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(missing.json()["detail"], "Order not found");

    let mut event = fixture("http_api_stage_missing_order.json");
    event["rawPath"] = json!("/staging/orders/2");
    let found = function.invoke(event).await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.json()["customer_name"], "Jane Smith");
}

#[tokio::test]
async fn http_api_stage_named_like_a_route_is_stripped_once() {
    let mut event = fixture("http_api_stage_missing_order.json");
    event["requestContext"]["stage"] = json!("orders");
    event["rawPath"] = json!("/orders/orders/3");
    let reply = Function::new().await.invoke(event).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["id"], "3");
}

#[tokio::test]
async fn function_url_create_with_a_base64_body_answers_201_with_location() {
    let mut function = Function::new().await;
    let reply = function
        .invoke(fixture("function_url_create_order.json"))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.raw["isBase64Encoded"], false);
    let order = reply.json();
    assert_eq!(order["customer_name"], "Ada Lovelace");
    assert_eq!(order["total_amount"], json!(25.0));
    let id = order["id"].as_str().expect("string id");
    assert_eq!(
        reply.header("location"),
        Some(format!("/orders/{id}").as_str())
    );

    // The idempotency key makes the retried event return the first order.
    let retried = function
        .invoke(fixture("function_url_create_order.json"))
        .await;
    assert_eq!(retried.json()["id"], json!(id));
}

#[tokio::test]
async fn alb_event_gets_an_alb_response_with_query_applied() {
    let mut function = Function::new().await;
    let reply = function.invoke(fixture("alb_list_orders.json")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.raw["statusDescription"], "200 OK");
    assert_eq!(reply.raw["isBase64Encoded"], false);
    assert_eq!(reply.json().as_array().map(Vec::len), Some(1));
    assert!(reply.header("link").is_some(), "{:?}", reply.headers);
}

#[tokio::test]
async fn a_client_request_id_is_kept() {
    let mut event = fixture("http_api_default_list_orders.json");
    event["headers"]["x-request-id"] = json!("client-chosen-id");
    let reply = Function::new().await.invoke(event).await;
    assert_eq!(reply.header("x-request-id"), Some("client-chosen-id"));
}

#[tokio::test]
async fn the_function_exposes_no_metrics_route() {
    let mut event = fixture("http_api_default_list_orders.json");
    event["rawPath"] = json!("/metrics");
    event["rawQueryString"] = json!("");
    let reply = Function::new().await.invoke(event).await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn each_invocation_writes_one_emf_line_with_only_its_own_counts() {
    let mut function = Function::new().await;
    function
        .invoke(fixture("rest_api_stage_get_order.json"))
        .await;
    let first = function.emf.take_lines();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_valid_emf(&first[0]);
    assert_eq!(first[0]["environment"], "preview-7");
    assert_eq!(
        first[0]["route"], "/orders/{id}",
        "stage stripped before routing"
    );
    assert_eq!(first[0]["method"], "GET");
    assert_eq!(first[0]["status"], "200");
    assert_eq!(first[0]["http_requests_total"], 1);
    assert!(first[0]["http_request_duration_seconds"].is_number());

    function
        .invoke(fixture("function_url_create_order.json"))
        .await;
    let second = function.emf.take_lines();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_valid_emf(&second[0]);
    assert_eq!(second[0]["route"], "/orders");
    assert_eq!(second[0]["method"], "POST");
    assert_eq!(second[0]["status"], "201");
    assert_eq!(second[0]["http_requests_total"], 1, "a delta, not a total");
    assert_eq!(second[0]["orders_created_total"], 1);

    // The registry itself keeps totals: the container's view is unchanged.
    let text = function.state().metrics.render();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/orders/{id}",status="200"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_disabled_means_no_emf() {
    let vars = [
        ("ENVIRONMENT", "preview-7"),
        ("API_KEYS", "fixture-key"),
        ("ENABLE_METRICS", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = order_service::Config::from_vars(&vars).expect("config");
    let state = order_service::build_state(config, order_service::Target::Lambda)
        .await
        .expect("state");
    let mut function = Function::with_state(state);
    let reply = function
        .invoke(fixture("http_api_default_list_orders.json"))
        .await;
    assert_eq!(reply.status, 200);
    assert!(function.emf.take_lines().is_empty());
}

/// A REST API event as API Gateway sends it when a client calls `client_path` (the URL path,
/// stage included) on the API's default endpoint.
fn rest_event(method: &str, stage: &str, client_path: &str, body: Option<Value>) -> Value {
    let (path, query) = client_path.split_once('?').unwrap_or((client_path, ""));
    let mut event = fixture("rest_api_stage_patch_order.json");
    let resource_path = match path.strip_prefix(&format!("/{stage}")) {
        Some("") => "/",
        Some(rest) => rest,
        None => panic!("{client_path} is not under stage {stage}"),
    };
    event["path"] = json!(resource_path);
    event["httpMethod"] = json!(method);
    event["requestContext"]["httpMethod"] = json!(method);
    event["requestContext"]["path"] = json!(path);
    event["requestContext"]["stage"] = json!(stage);
    let mut single = serde_json::Map::new();
    let mut multi = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        single.insert(name.to_owned(), json!(value));
        multi.insert(name.to_owned(), json!([value]));
    }
    event["queryStringParameters"] = if single.is_empty() {
        Value::Null
    } else {
        Value::Object(single)
    };
    event["multiValueQueryStringParameters"] = if multi.is_empty() {
        Value::Null
    } else {
        Value::Object(multi)
    };
    event["body"] = body.map_or(Value::Null, |b| json!(b.to_string()));
    event
}

/// lambda_http prefixes the stage unless the path already starts with `/{stage}/`: a stage
/// named like a route segment must still reach every route, `/orders` included.
#[tokio::test]
async fn rest_api_stages_named_like_routes_reach_every_route() {
    for stage in ["orders", "health", "docs", "prod"] {
        let mut function = Function::new().await;
        for (client_path, expect) in [
            (format!("/{stage}/orders"), "a list"),
            (format!("/{stage}/orders/2"), "order 2"),
            (format!("/{stage}/health"), "health"),
            (format!("/{stage}"), "welcome"),
        ] {
            let reply = function
                .invoke(rest_event("GET", stage, &client_path, None))
                .await;
            assert_eq!(
                reply.status, 200,
                "stage {stage}, {client_path}: {}",
                reply.body
            );
            let body = reply.json();
            match expect {
                "a list" => assert!(body.as_array().is_some_and(|a| a.len() == 3), "{body}"),
                "order 2" => assert_eq!(body["id"], "2"),
                "health" => assert_eq!(body["status"], "OK"),
                _ => assert!(body["message"].is_string(), "{body}"),
            }
        }
    }
}

/// Through a REST API's default endpoint the stage is part of the client's URL: `Location`
/// and `Link` carry it, so the client can follow them as they are.
#[tokio::test]
async fn location_and_link_are_followable_through_a_rest_default_endpoint() {
    let stage = "orders";
    let mut function = Function::new().await;
    let order = json!({
        "customer_name": "Stage Follower",
        "items": [{"product_id": 1, "name": "Lamp", "quantity": 1, "price": 10.0}],
        "shipping_address": "1 Stage Rd"
    });
    let created = function
        .invoke(rest_event("POST", stage, "/orders/orders", Some(order)))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().expect("id").to_owned();
    let location = created.header("location").expect("location").to_owned();
    assert_eq!(location, format!("/orders/orders/{id}"));
    let followed = function
        .invoke(rest_event("GET", stage, &location, None))
        .await;
    assert_eq!(followed.status, 200, "{}", followed.body);
    assert_eq!(followed.json()["id"], json!(id));

    let mut seen = Vec::new();
    let mut next = Some("/orders/orders?limit=3".to_owned());
    while let Some(path) = next.take() {
        let page = function.invoke(rest_event("GET", stage, &path, None)).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        seen.extend(
            page.json()
                .as_array()
                .expect("array")
                .iter()
                .map(|o| o["id"].clone()),
        );
        next = page.header("link").map(|link| {
            assert!(link.starts_with("</orders/orders?"), "{link}");
            link.trim_start_matches('<')
                .split('>')
                .next()
                .expect("target")
                .to_owned()
        });
    }
    assert_eq!(seen, [json!("1"), json!("2"), json!("3"), json!(id)]);
}

#[tokio::test]
async fn http_api_named_stage_links_carry_the_stage() {
    let mut event = fixture("http_api_stage_missing_order.json");
    event["requestContext"]["stage"] = json!("orders");
    event["rawPath"] = json!("/orders/orders");
    event["rawQueryString"] = json!("limit=2");
    let reply = Function::new().await.invoke(event.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let link = reply.header("link").expect("next link");
    assert!(
        link.starts_with("</orders/orders?limit=2&cursor="),
        "{link}"
    );
    // The stage's root is the service's root.
    event["rawPath"] = json!("/orders");
    event["rawQueryString"] = json!("");
    let root = Function::new().await.invoke(event).await;
    assert_eq!(root.status, 200, "{}", root.body);
    assert!(root.json()["message"].is_string());
}
