//! Service-level routes: welcome, liveness and readiness.

use axum::extract::State;
use axum::routing::get;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::Routes;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Routes {
    Routes::new().route("/", get(welcome))
}

/// The kubelet's probes' paths: kept out of admission control, so a busy pod is not restarted.
pub const PROBES: &[&str] = &["/health", "/ready"];

/// The routes at [`PROBES`].
pub fn probes() -> Routes {
    Routes::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

#[derive(Serialize, ToSchema)]
pub struct Welcome {
    #[schema(example = "Welcome to the Order Service API - local")]
    message: String,
}

#[derive(Serialize, ToSchema)]
pub struct Status {
    #[schema(example = "OK")]
    status: &'static str,
}

/// Welcome message naming the environment.
#[utoipa::path(get, path = "/", tag = "service", responses((status = 200, body = Welcome)))]
pub async fn welcome(State(state): State<AppState>) -> Json<Welcome> {
    Json(Welcome {
        message: format!(
            "Welcome to the Order Service API - {}",
            state.config.environment
        ),
    })
}

/// Liveness: the process answers. Checks nothing outside it.
#[utoipa::path(get, path = "/health", tag = "service", responses((status = 200, body = Status)))]
pub async fn health() -> Json<Status> {
    Json(Status { status: "OK" })
}

/// Readiness of the service.
///
/// 200 when the store answers, the runtime secret (when enabled) was loaded at least once,
/// and the service is not draining.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "service",
    responses(
        (status = 200, body = Status),
        (status = 503, description = "Not ready", body = crate::error::Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    if state.readiness.is_draining() {
        return Err(ApiError::NotReady);
    }
    if state.secrets.as_ref().is_some_and(|s| !s.has_value()) {
        return Err(ApiError::NotReady);
    }
    state
        .store
        .ping()
        .await
        .map_err(ApiError::StoreUnavailable)?;
    Ok(Json(Status { status: "OK" }))
}
