//! `router(state)`: admission control, every route and every layer, the single door both shells
//! and the tests use.

use std::sync::Arc;

use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::any;
use axum::BoxError;
use axum::Router;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::error::Overloaded;
use tower::load_shed::LoadShedLayer;
use tower::ServiceBuilder;

use crate::admission::App;
use crate::error::{internal_error, problem, ErrorCause};
use crate::layers;
use crate::metrics;
use crate::routes;
use crate::secrets::SecretsLoader;
use crate::state::AppState;

pub fn router(state: AppState) -> App {
    let routes = routes::meta::router()
        .merge(routes::orders::router())
        .merge(routes::docs::router());
    // Only where the secret is refreshed on request (the Lambda): elsewhere a background task
    // refreshes it and requests pass no layer for it. Inside the timeout, so the refresh is
    // part of the request and ends within it.
    let routes = match state.secrets.as_ref().filter(|s| s.refreshes_on_request()) {
        Some(loader) => routes.layer(from_fn_with_state(Arc::clone(loader), refresh_stale_secret)),
        None => routes,
    };
    // Bare 404; the access layer gives it the problem shape.
    let not_found = || any(|| async { StatusCode::NOT_FOUND });
    let api = routes.with_state(state.clone(), not_found());
    let api = layers::observed(api, &state.config, &state.metrics);
    let probes = routes::meta::probes().with_state(state.clone(), not_found());
    let probes = layers::observed(probes, &state.config, &state.metrics);
    // Admission control comes before the routers (a refusal passes no router and no layer)
    // and skips the probes, which are answered however busy the pod is.
    App::admitting(
        api,
        Arc::clone(&state.admission),
        routes::meta::PROBES,
        probes,
    )
}

/// On the Lambda, the first request after the refresh interval fetches the runtime secret
/// before it is served: a frozen process cannot refresh in the background. Elsewhere a no-op.
async fn refresh_stale_secret(
    axum::extract::State(secrets): axum::extract::State<Arc<SecretsLoader>>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    secrets.refresh_if_stale().await;
    next.run(request).await
}

/// The router of the metrics port: `/metrics` only, with its own small in-flight bound so a
/// flood of scrapes cannot take the API's CPU.
pub fn metrics_router(state: AppState) -> App<Router> {
    let router = Router::new().route("/metrics", axum::routing::get(metrics::exposition));
    let router = crate::encoding::negotiated(router, state.config.compression_min_bytes);
    App::unlimited(shed_load(router, METRICS_MAX_IN_FLIGHT).with_state(Arc::clone(&state.metrics)))
}

/// Concurrent scrapes the metrics port serves; Prometheus scrapes once per interval per replica.
const METRICS_MAX_IN_FLIGHT: usize = 8;

/// Seconds a shed scrape is asked to wait.
const RETRY_AFTER_SECONDS: &str = "1";

/// At most `max` scrapes in flight; above it the answer is an immediate 503 with
/// `Retry-After` rather than a place in a queue that ends in a timeout.
fn shed_load<S: Clone + Send + Sync + 'static>(router: Router<S>, max: usize) -> Router<S> {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |error: BoxError| async move {
                overloaded_response(max, &error)
            }))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(max)),
    )
}

fn overloaded_response(max: usize, error: &BoxError) -> axum::response::Response {
    if !error.is::<Overloaded>() {
        // The layers below never fail; kept total rather than unreachable.
        return internal_error(ErrorCause::from_error(error.as_ref()));
    }
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "the service is at capacity; retry later".to_owned(),
        Vec::new(),
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response.extensions_mut().insert(ErrorCause::new(format!(
        "load shed: {max} requests already in flight"
    )));
    response
}
