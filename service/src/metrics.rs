//! One Prometheus registry per `AppState`, shared by both shells: the HTTP middleware that
//! feeds it, and the text exposition the container serves on its metrics port.
//!
//! The registry lives in the state, not in a global, so tests can build the app many times.

pub mod emf;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Which shell runs the router; the `target` label of `build_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Container,
    Lambda,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Container => "container",
            Target::Lambda => "lambda",
        }
    }
}

/// Route label for requests no route matched: keeps the label set bounded.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Latency buckets in seconds, from sub-millisecond reads to the request timeout. 0.3 is the
/// latency SLO threshold (chart value slo.latency.thresholdSeconds): the SLI needs it as a bound.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub http_requests_in_flight: IntGauge,
    pub orders_created: IntCounter,
    pub secrets_refresh: IntCounterVec,
    pub secrets_last_success: Gauge,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot register metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn new(target: Target) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )?;
        let http_request_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        let http_requests_in_flight =
            IntGauge::new("http_requests_in_flight", "HTTP requests being served")?;
        let orders_created = IntCounter::new("orders_created_total", "Orders created")?;
        let secrets_refresh = IntCounterVec::new(
            Opts::new("secrets_refresh_total", "Runtime secret fetches by result"),
            &["result"],
        )?;
        let secrets_last_success = Gauge::new(
            "secrets_last_success_timestamp_seconds",
            "Unix time of the last successful runtime secret fetch",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "Build of the running binary; always 1"),
            &["version", "target"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), target.as_str()])
            .set(1);
        // Pre-create both results so a dashboard sees zeros rather than no series.
        for result in ["success", "error"] {
            secrets_refresh.with_label_values(&[result]);
        }

        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_request_duration.clone()))?;
        registry.register(Box::new(http_requests_in_flight.clone()))?;
        registry.register(Box::new(orders_created.clone()))?;
        registry.register(Box::new(secrets_refresh.clone()))?;
        registry.register(Box::new(secrets_last_success.clone()))?;
        registry.register(Box::new(build_info))?;
        // Not on Lambda: Lambda reports the sandbox's memory and duration itself, and EMF
        // leaves process_* out, so reading /proc on every flush would be wasted.
        #[cfg(target_os = "linux")]
        if target == Target::Container {
            registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))?;
        }

        Ok(Self {
            registry,
            http_requests,
            http_request_duration,
            http_requests_in_flight,
            orders_created,
            secrets_refresh,
            secrets_last_success,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Counts and times every request by method, route template and status.
pub async fn track_http(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let _in_flight = InFlight::enter(&metrics.http_requests_in_flight);
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .http_request_duration
        .with_label_values(&[method, &route])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .with_label_values(&[method, &route, response.status().as_str()])
        .inc();
    response
}

/// The `method` label: the standard methods by name, anything a client made up as `OTHER`,
/// so neither Prometheus nor CloudWatch (through EMF) grows a series per invented method.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Keeps the in-flight gauge right even when a request future is dropped mid-way.
struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Handler for `/metrics` on the metrics port.
pub async fn exposition(
    State(metrics): State<Arc<Metrics>>,
) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        metrics.render(),
    )
}
