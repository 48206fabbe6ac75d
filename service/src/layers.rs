//! The layers every API answer passes, put around all the routes once.
//!
//! Not with `Router::layer`, which wraps each route instead: that adds a boxed service (cloned
//! on every request) and a boxed future to each request. So the access layer learns a
//! request's route from the routes' templates (`routing::Paths`), not from axum.

use std::sync::Arc;

use tower::ServiceBuilder;

use crate::access::{Observe, ObserveLayer, RouteTable};
use crate::config::Config;
use crate::encoding::{Negotiated, RequestBodies};
use crate::error::{CatchPanic, CatchPanicLayer};
use crate::metrics::Metrics;
use crate::routing::Routed;
use crate::timeout::{RequestTimeout, RequestTimeoutLayer};

/// A router with every layer of the API around it; see [`observed`].
pub type Api = Observe<Negotiated<CatchPanic<RequestBodies<RequestTimeout<Routed>>>>>;

/// `router` with the layers, outermost first. Bare error answers of any layer get the problem
/// shape in the access layer (`error::problem_for_bare_error`); refusals never reach it
/// (admission is outside it).
pub fn observed(router: Routed, config: &Config, metrics: &Arc<Metrics>) -> Api {
    ServiceBuilder::new()
        .layer(ObserveLayer::new(RouteTable::new(router.paths(), metrics)))
        .layer(crate::encoding::negotiation(config.compression_min_bytes))
        .layer(CatchPanicLayer)
        .layer(crate::encoding::request_bodies(config.body_limit_bytes))
        .layer(RequestTimeoutLayer::new(config.request_timeout))
        .service(router)
}
