//! Orders are customer data: reads and writes need a key whose scopes allow them, outside a
//! developer's machine or `PUBLIC_READS=true`.

use std::collections::HashMap;

use axum::http::{Method, StatusCode};
use order_service::App;
use order_service::{build_state_with_aws, router, Config, Target};
use serde_json::{json, Value};

use crate::support::moto::Moto;
use crate::support::{get, new_order, request, send, state_with, Reply};

async fn read(app: &App, uri: &str, key: Option<&str>) -> Reply {
    let authorization = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = authorization
        .iter()
        .map(|value| ("authorization", value.as_str()))
        .collect();
    send(app, request(Method::GET, uri, &headers, None)).await
}

async fn create(app: &App, key: &str, idempotency_key: &str) -> Reply {
    let authorization = format!("Bearer {key}");
    let headers = [
        ("authorization", authorization.as_str()),
        ("idempotency-key", idempotency_key),
    ];
    let body = new_order("Key Holder");
    send(app, request(Method::POST, "/orders", &headers, Some(&body))).await
}

#[tokio::test]
async fn reads_need_a_key_outside_local() {
    let app = router(state_with(&[("ENVIRONMENT", "production"), ("API_KEYS", "k-one")]).await);
    for uri in ["/orders", "/orders/1", "/orders/999"] {
        let anonymous = read(&app, uri, None).await;
        let body = anonymous.problem(StatusCode::UNAUTHORIZED);
        assert_eq!(
            anonymous.header("www-authenticate"),
            Some("Bearer"),
            "{uri}"
        );
        assert!(!body.to_string().contains("John Doe"));
        let wrong = read(&app, uri, Some("k-two")).await;
        wrong.problem(StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        read(&app, "/orders", Some("k-one")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        read(&app, "/orders/1", Some("k-one")).await.status,
        StatusCode::OK
    );
    for uri in ["/", "/health", "/ready", "/openapi.json", "/docs"] {
        assert_eq!(
            get(&app, uri).await.status,
            StatusCode::OK,
            "{uri} is public"
        );
    }
}

#[tokio::test]
async fn public_reads_open_reads_and_nothing_else() {
    let app = router(
        state_with(&[
            ("ENVIRONMENT", "production"),
            ("API_KEYS", "k-one"),
            ("PUBLIC_READS", "true"),
        ])
        .await,
    );
    assert_eq!(get(&app, "/orders").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/orders/1").await.status, StatusCode::OK);
    let body = new_order("Anonymous");
    let write = send(&app, request(Method::POST, "/orders", &[], Some(&body))).await;
    write.problem(StatusCode::UNAUTHORIZED);
    // A developer's machine reads without a key, as before.
    let local = router(state_with(&[("API_KEYS", "k-one")]).await);
    assert_eq!(get(&local, "/orders").await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_document_says_reads_take_a_key() {
    let app = router(state_with(&[]).await);
    let document = get(&app, "/openapi.json").await.json();
    for (path, method) in [("/orders", "get"), ("/orders/{id}", "get")] {
        let operation = &document["paths"][path][method];
        assert_eq!(
            operation["security"],
            json!([{"bearer": []}]),
            "{method} {path}"
        );
        assert!(operation["responses"]["401"].is_object(), "{method} {path}");
    }
    assert!(document["paths"]["/orders"]["post"]["responses"]["403"].is_object());
}

const SHOP_OLD: &str = "shop-key-4b1e";
const SHOP_NEW: &str = "shop-key-9d02";
const REPORTS: &str = "reports-key-77aa";

fn secret(shop_key: &str) -> String {
    json!({
        "api_keys": [
            "legacy-plain-key",
            {"id": "shop", "key": shop_key, "scopes": ["read", "write"]},
            {"id": "reports", "key": REPORTS, "scopes": ["read"]},
        ]
    })
    .to_string()
}

#[tokio::test]
async fn scopes_and_ids_from_the_runtime_secret() {
    let moto = Moto::start().await;
    moto.create_secret("app/keys", &secret(SHOP_OLD)).await;
    let vars: HashMap<String, String> = [
        ("ENVIRONMENT", "production"),
        ("SECRETS_MANAGER_ENABLED", "true"),
        ("AWS_SECRET_NAME", "app/keys"),
        ("AWS_REGION", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_vars(&vars).expect("test config is valid");
    let state = build_state_with_aws(config, Target::Container, Some(moto.sdk_config().await))
        .await
        .expect("state builds");
    let app = router(state.clone());

    // A read-only key reads, and its writes are 403 with nothing created.
    assert_eq!(
        read(&app, "/orders/1", Some(REPORTS)).await.status,
        StatusCode::OK
    );
    let before = read(&app, "/orders?limit=500", Some(REPORTS)).await.json();
    let refused = create(&app, REPORTS, "reports-1").await;
    let problem = refused.problem(StatusCode::FORBIDDEN);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("write")),
        "{problem}"
    );
    let after = read(&app, "/orders?limit=500", Some(REPORTS)).await.json();
    assert_eq!(before, after);
    // A plain string is a read-and-write key, as before keys had ids.
    assert_eq!(
        create(&app, "legacy-plain-key", "legacy-1").await.status,
        StatusCode::CREATED
    );

    // A retry that spans a rotation of the shop key's value replays the first order.
    let first = create(&app, SHOP_OLD, "checkout-7").await;
    assert_eq!(first.status, StatusCode::CREATED);
    moto.put_secret("app/keys", &secret(SHOP_NEW)).await;
    let secrets = state.secrets.clone().expect("secrets enabled");
    secrets.refresh().await.expect("refresh succeeds");
    assert_eq!(
        create(&app, SHOP_OLD, "checkout-7").await.status,
        StatusCode::UNAUTHORIZED,
        "the old value is gone"
    );
    let retry = create(&app, SHOP_NEW, "checkout-7").await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    let id = |reply: &Reply| reply.json()["id"].clone();
    assert_eq!(id(&retry), id(&first));
    assert_ne!(id(&first), Value::Null);
}
