//! Admission control through `router(state)`: what a refused client, an operator and the
//! kubelet see when the pod is at its concurrency limit.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use order_service::admission::Permit;
use order_service::{metrics_router, router, AppState};
use serde_json::Value;

use crate::observability::Captured;
use crate::support::{get, request, send, state_with};

/// Takes every place the current limit allows, as requests in flight would (the attempt that
/// finds none counts as one refusal).
fn saturate(state: &AppState) -> Vec<Permit> {
    let mut held = Vec::new();
    while let Some(permit) = state.admission.try_admit() {
        held.push(permit);
    }
    assert!(!held.is_empty(), "the limit admits at least one request");
    held
}

async fn scrape(state: &AppState) -> String {
    let reply = get(&metrics_router(state.clone()), "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    String::from_utf8(reply.body).expect("text")
}

#[tokio::test]
async fn at_the_limit_api_requests_get_a_fixed_503_with_retry_after() {
    let state = state_with(&[]).await;
    let app = router(state.clone());
    let held = saturate(&state);

    for path in ["/orders/1", "/orders", "/", "/no-such-route"] {
        let reply = get(&app, path).await;
        let problem = reply.problem(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.header("retry-after"), Some("1"), "{path}");
        assert_eq!(
            problem["detail"], "the service is at capacity; retry later",
            "{path}"
        );
    }
    let metrics = scrape(&state).await;
    assert!(
        metrics.contains("http_requests_refused_total 5"),
        "{metrics}"
    );
    // Refusals are counted apart: no route label was looked up for them.
    assert!(!metrics.contains(r#"status="503""#), "{metrics}");

    drop(held);
    assert_eq!(get(&app, "/orders/1").await.status, StatusCode::OK);
}

/// The refusal is written into the request's emptied header map: nothing the client sent
/// (its key, its cookies) may come back in the answer.
#[tokio::test]
async fn a_refusal_carries_its_own_headers_and_none_of_the_request() {
    let state = state_with(&[]).await;
    let app = router(state.clone());
    let _held = saturate(&state);
    let sent = [
        ("authorization", "Bearer secret-key"),
        ("cookie", "session=secret"),
        ("x-request-id", "client-id"),
        ("accept", "application/json"),
    ];
    let reply = send(&app, request(Method::GET, "/orders/1", &sent, None)).await;
    reply.problem(StatusCode::SERVICE_UNAVAILABLE);
    let mut names: Vec<&str> = reply.headers.keys().map(|name| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-type", "retry-after"]);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
}

#[tokio::test]
async fn probes_and_scrapes_are_answered_at_the_limit() {
    let state = state_with(&[("MAX_IN_FLIGHT_REQUESTS", "1")]).await;
    let app = router(state.clone());
    let _held = saturate(&state);
    assert_eq!(
        get(&app, "/orders/1").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // The kubelet must not restart a pod that is merely busy; readiness reports the store.
    assert_eq!(get(&app, "/health").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/ready").await.status, StatusCode::OK);
    let metrics = scrape(&state).await;
    assert!(metrics.contains("http_concurrency_limit 1"), "{metrics}");
    // The probes still pass the access log and the metrics like any answered request.
    assert!(
        metrics.contains(r#"http_requests_total{method="GET",route="/health",status="200"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_concurrency_limit_is_a_gauge_that_starts_at_the_ceiling() {
    let state = state_with(&[("MAX_IN_FLIGHT_REQUESTS", "32")]).await;
    let metrics = scrape(&state).await;
    let limit: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("http_concurrency_limit "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no limit gauge:\n{metrics}"));
    // Where a fixed bound would be, until latency shows queueing (admission::limit's tests).
    assert_eq!(limit, 32);
    assert_eq!(state.admission.limit(), limit);

    let fixed = state_with(&[
        ("MAX_IN_FLIGHT_REQUESTS", "32"),
        ("ADAPTIVE_CONCURRENCY", "false"),
    ])
    .await;
    assert_eq!(fixed.admission.limit(), 32);
}

/// A refusal writes no log line of its own; once a second one WARN line counts them.
#[tokio::test]
async fn refusals_are_summarised_once_a_second_at_warn() {
    let (logs, _guard) = Captured::start();
    let state = state_with(&[]).await;
    let app = router(state.clone());
    let held = saturate(&state);
    for _ in 0..5 {
        assert_eq!(
            get(&app, "/orders/1").await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert!(
        logs.lines().is_empty(),
        "a line per refusal: {:?}",
        logs.lines()
    );

    let summary = |lines: &[Value]| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["refused"].is_number())
            .cloned()
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while summary(&logs.lines()).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no summary line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = summary(&logs.lines());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["level"], "WARN");
    assert_eq!(lines[0]["refused"], 5 + 1);
    // Nothing refused since: no further line.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(summary(&logs.lines()).len(), 1, "{:?}", logs.lines());
    assert!(
        logs.lines().iter().all(|l| l["level"] != "ERROR"),
        "{:?}",
        logs.lines()
    );
    drop(held);
}
