//! `router(state)`: every route and every layer, the single door both shells and the tests use.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{Response, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

use crate::error::{problem_for_bare_errors, ErrorCause};
use crate::metrics::{self, UNMATCHED_ROUTE};
use crate::routes;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let config = &state.config;
    // Outermost first. `Router::layer` wraps each route, so the route template
    // (`MatchedPath`) is known to the access log and the metrics.
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(AccessSpan)
                .on_request(())
                .on_response(AccessLog)
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(from_fn_with_state(state.clone(), metrics::track_http))
        .layer(from_fn_with_state(state.clone(), refresh_stale_secret))
        .layer(from_fn(problem_for_bare_errors))
        .layer(CatchPanicLayer::new())
        .layer(RequestBodyLimitLayer::new(config.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            config.request_timeout,
        ));

    Router::new()
        .merge(routes::meta::router())
        .merge(routes::orders::router())
        .merge(routes::docs::router())
        // Bare 404; `problem_for_bare_errors` gives it the problem shape.
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(layers)
        .with_state(state)
}

/// On the Lambda, the first request after the refresh interval fetches the runtime secret
/// before it is served: a frozen process cannot refresh in the background. Elsewhere a no-op.
async fn refresh_stale_secret(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(secrets) = &state.secrets {
        secrets.refresh_if_stale().await;
    }
    next.run(request).await
}

/// The router of the metrics port: `/metrics` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics::exposition))
        .with_state(state)
}

/// One span per request, carrying what every log line of that request should show.
#[derive(Clone)]
struct AccessSpan;

impl<B> MakeSpan<B> for AccessSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or(UNMATCHED_ROUTE, |p| p.as_str());
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        tracing::info_span!("request", method = %request.method(), route, request_id)
    }
}

/// The access-log line: status and latency (method, route and request id come from the
/// span). Never bodies, never headers that may hold credentials.
#[derive(Clone)]
struct AccessLog;

impl<B> OnResponse<B> for AccessLog {
    fn on_response(self, response: &Response<B>, latency: Duration, _span: &Span) {
        let status = response.status().as_u16();
        let latency_ms = latency.as_secs_f64() * 1000.0;
        match response.extensions().get::<ErrorCause>() {
            Some(ErrorCause(cause)) => {
                tracing::error!(status, latency_ms, cause = %cause, "request failed")
            }
            None => tracing::info!(status, latency_ms, "request"),
        }
    }
}
