//! One Prometheus registry per `AppState`, shared by both shells: the HTTP middleware that
//! feeds it, and the text exposition the container serves on its metrics port.
//!
//! The registry lives in the state, not in a global, so tests can build the app many times.

pub mod emf;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use prometheus::core::{Collector, Desc, Describer};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
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
    /// The series of each route template, found once and kept: a request then does no label
    /// lookup (hashing and locking the label values was a few percent of a request).
    http_routes: RwLock<HashMap<Box<str>, Arc<RouteSeries>>>,
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
        if target == Target::Container {
            registry.register(Box::new(DroppedLogLines::new()?))?;
        }
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
            http_routes: RwLock::new(HashMap::new()),
        })
    }

    /// The series of requests to `route` (a route template, or [`UNMATCHED_ROUTE`]), found
    /// once when the router is built, so a request only picks its method's.
    pub fn route(self: &Arc<Self>, route: &str) -> RouteMetrics {
        let routes = crate::sync::read(&self.http_routes);
        let found = routes.get(route).map(Arc::clone);
        drop(routes);
        let route_series = found.unwrap_or_else(|| {
            let mut routes = crate::sync::write(&self.http_routes);
            Arc::clone(routes.entry(route.into()).or_insert_with(|| {
                Arc::new(RouteSeries {
                    route: route.into(),
                    methods: Default::default(),
                })
            }))
        });
        RouteMetrics {
            metrics: Arc::clone(self),
            route: route_series,
        }
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

/// The `method` label: the standard methods by name, anything a client made up as `OTHER`,
/// so neither Prometheus nor CloudWatch (through EMF) grows a series per invented method.
pub fn method_label(method: &Method) -> &'static str {
    METHOD_LABELS[method_index(method)]
}

/// Where `method`'s label is in [`METHOD_LABELS`].
fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

/// Every value [`method_label`] gives, `OTHER` last.
const METHOD_LABELS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

/// The statuses whose counters a route keeps at hand; others are looked up by label.
const COMMON_STATUSES: [u16; 16] = [
    200, 201, 204, 304, 400, 401, 403, 404, 405, 409, 412, 413, 415, 422, 503, 504,
];

/// One route template's series, per method, made on first use.
struct RouteSeries {
    route: Box<str>,
    methods: [OnceLock<MethodSeries>; METHOD_LABELS.len()],
}

struct MethodSeries {
    duration: Histogram,
    by_status: [OnceLock<IntCounter>; COMMON_STATUSES.len()],
}

/// One route's series, per method; see [`Metrics::route`].
#[derive(Clone)]
pub struct RouteMetrics {
    metrics: Arc<Metrics>,
    route: Arc<RouteSeries>,
}

impl RouteMetrics {
    /// The series of a request with `method`.
    pub fn series(&self, method: &Method) -> HttpSeries {
        HttpSeries {
            metrics: Arc::clone(&self.metrics),
            index: method_index(method),
            route: Arc::clone(&self.route),
        }
    }
}

/// The series one request feeds: its latency, its count by status, and the in-flight gauge.
#[derive(Clone)]
pub struct HttpSeries {
    metrics: Arc<Metrics>,
    index: usize,
    route: Arc<RouteSeries>,
}

impl HttpSeries {
    fn method(&self) -> &MethodSeries {
        let method = METHOD_LABELS[self.index];
        self.route.methods[self.index].get_or_init(|| MethodSeries {
            duration: self
                .metrics
                .http_request_duration
                .with_label_values(&[method, &self.route.route]),
            by_status: Default::default(),
        })
    }

    /// The route template (or [`UNMATCHED_ROUTE`]) of the series.
    pub fn route(&self) -> &str {
        &self.route.route
    }

    /// Counts the request in `http_requests_in_flight` until the guard is dropped.
    pub fn enter(self) -> InFlight {
        self.metrics.http_requests_in_flight.inc();
        InFlight(self)
    }

    /// Records an answered request.
    pub fn observe(&self, status: StatusCode, latency: Duration) {
        let series = self.method();
        series.duration.observe(latency.as_secs_f64());
        let labels = |status: &str| {
            self.metrics.http_requests.with_label_values(&[
                METHOD_LABELS[self.index],
                &self.route.route,
                status,
            ])
        };
        match COMMON_STATUSES.iter().position(|s| *s == status.as_u16()) {
            Some(at) => series.by_status[at]
                .get_or_init(|| labels(status.as_str()))
                .inc(),
            None => labels(status.as_str()).inc(),
        }
    }
}

/// `log_lines_dropped_total`, read from the log writer when scraped.
struct DroppedLogLines {
    desc: Desc,
    opts: Opts,
}

impl DroppedLogLines {
    fn new() -> Result<Self, prometheus::Error> {
        let opts = Opts::new(
            "log_lines_dropped_total",
            "Log lines dropped because standard output did not keep up",
        );
        let desc = opts.describe()?;
        Ok(Self { desc, opts })
    }
}

impl Collector for DroppedLogLines {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        match IntCounter::with_opts(self.opts.clone()) {
            Ok(counter) => {
                counter.inc_by(crate::telemetry::dropped_lines());
                counter.collect()
            }
            Err(_) => Vec::new(),
        }
    }
}

/// Keeps the in-flight gauge right even when a request future is dropped mid-way.
pub struct InFlight(HttpSeries);

impl InFlight {
    /// The series the request feeds.
    pub fn series(&self) -> &HttpSeries {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.metrics.http_requests_in_flight.dec();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_standard_method_is_its_own_label_and_an_invented_one_is_other() {
        for label in &METHOD_LABELS[..METHOD_LABELS.len() - 1] {
            let method = Method::from_bytes(label.as_bytes()).expect("a method");
            assert_eq!(method_label(&method), *label);
        }
        let invented = Method::from_bytes(b"BREW").expect("a method");
        assert_eq!(method_label(&invented), "OTHER");
    }

    #[test]
    fn the_container_exports_dropped_log_lines_and_counts_by_route_status() {
        let metrics = Arc::new(Metrics::new(Target::Container).expect("metrics"));
        assert!(metrics.render().contains("\nlog_lines_dropped_total 0\n"));
        let series = metrics.route("/orders/{id}").series(&Method::GET);
        series.observe(StatusCode::OK, Duration::from_millis(1));
        series.observe(StatusCode::IM_A_TEAPOT, Duration::from_millis(1));
        metrics
            .route("/orders/{id}")
            .series(&Method::GET)
            .observe(StatusCode::OK, Duration::from_millis(1));
        let text = metrics.render();
        for line in [
            r#"http_requests_total{method="GET",route="/orders/{id}",status="200"} 2"#,
            r#"http_requests_total{method="GET",route="/orders/{id}",status="418"} 1"#,
            r#"http_request_duration_seconds_count{method="GET",route="/orders/{id}"} 3"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
