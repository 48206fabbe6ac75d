//! The outermost layer around the routes (`layers.rs`): the request id, the trace context, the
//! HTTP metrics and the access-log line, in one layer (each layer of its own boxed a future and
//! cloned a service per request).
//!
//! A request gets a span (`request`, carrying method, route, request id and trace id) only
//! when DEBUG is enabled, for the lines the request logs along the way; at INFO the one
//! access-log event carries those fields itself and the JSON line shows them as the same
//! `span` object.
//!
//! A plain tower layer with a future of its own, not `axum::middleware::from_fn`: that boxes
//! the request's future, clones the whole stack below it and the state on every request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use bytes::Bytes;
use tower::{BoxError, Layer, Service};

use crate::error::{problem_for_bare_error, ErrorCause};
use crate::metrics::{InFlight, Metrics, RouteMetrics, UNMATCHED_ROUTE};
use crate::request_id;
use crate::routing::Paths;
use crate::telemetry::json::{self, AccessLine};
use crate::telemetry::{self, TraceContext};

/// Logs, counts and names every request: `x-request-id` (the client's when acceptable, else
/// a fresh one) and `traceresponse` on the answer, one access-log line (status and latency;
/// on a server error, at ERROR with its cause), `http_requests_total` and
/// `http_request_duration_seconds`. Never bodies, never headers that may hold credentials.
#[derive(Clone)]
pub struct ObserveLayer {
    routes: Arc<RouteTable>,
}

impl ObserveLayer {
    pub fn new(routes: RouteTable) -> Self {
        Self {
            routes: Arc::new(routes),
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            routes: Arc::clone(&self.routes),
            inner,
        }
    }
}

/// The route templates of the router the layer is around, and each one's series. The layer
/// is outside the router, so it matches the path itself.
pub struct RouteTable {
    paths: Arc<Paths>,
    /// By the index of the template in `paths`.
    series: Vec<RouteMetrics>,
    unmatched: RouteMetrics,
}

impl RouteTable {
    pub fn new(paths: &Arc<Paths>, metrics: &Arc<Metrics>) -> Self {
        Self {
            paths: Arc::clone(paths),
            series: paths
                .templates()
                .iter()
                .map(|template| metrics.route(template))
                .collect(),
            unmatched: metrics.route(UNMATCHED_ROUTE),
        }
    }

    /// The series of the route `path` belongs to, or of [`UNMATCHED_ROUTE`].
    fn find(&self, path: &str) -> &RouteMetrics {
        self.paths
            .find(path)
            .and_then(|index| self.series.get(index))
            .unwrap_or(&self.unmatched)
    }
}

/// See [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S> {
    routes: Arc<RouteTable>,
    inner: S,
}

impl<S, B> Service<Request> for Observe<S>
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let request_id = request_id::accept_or_make(request.headers_mut());
        let trace = TraceContext::from_headers(request.headers());
        let method = request.method().clone();
        let in_flight = self
            .routes
            .find(request.uri().path())
            .series(&method)
            .enter();
        let span = tracing::debug_span!(
            "request",
            method = method.as_str(),
            route = in_flight.series().route(),
            request_id = request_id.to_str().unwrap_or_default(),
            trace_id = trace.trace_id.as_str()
        );
        let inner = span.in_scope(|| self.inner.call(request));
        Observed {
            inner,
            line: Some(Line {
                started,
                request_id,
                trace,
                method,
                in_flight,
                span,
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// The request's answer, observed when it is ready.
    pub struct Observed<F> {
        #[pin]
        inner: F,
        line: Option<Line>,
    }
}

/// A name made once: a name given as text is parsed (and allocated) on every insert.
const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");

/// What the access line and the answer's headers need from the request.
struct Line {
    started: Instant,
    request_id: HeaderValue,
    trace: TraceContext,
    method: Method,
    in_flight: InFlight,
    span: tracing::Span,
}

impl<F, B> Future for Observed<F>
where
    F: Future<Output = Result<axum::http::Response<B>, Infallible>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = match this.line {
            // The request's own work runs inside its span (a no-op when DEBUG is off).
            Some(line) => line.span.in_scope(|| this.inner.poll(cx)),
            None => this.inner.poll(cx),
        };
        let Ok(response) = ready!(answer);
        let line = this
            .line
            .take()
            .expect("an observed request is polled after its answer");
        Poll::Ready(Ok(line.finish(response.map(Body::new))))
    }
}

impl Line {
    /// Logs and counts the answer, and names it with the request id and the trace.
    fn finish(self, response: Response) -> Response {
        let mut response = problem_for_bare_error(response);
        let latency = self.started.elapsed();
        let status = response.status();
        self.in_flight.series().observe(status, latency);
        let status_code = status.as_u16();
        let latency_ms = json::millis(latency);
        let span = &self.span;
        let route = self.in_flight.series().route();
        let id = self.request_id.to_str().unwrap_or_default();
        // With a span the line is written inside it; without, it carries the span's fields.
        // The message is a `&str` field, as a literal message would be shown, without a
        // formatting pass.
        macro_rules! access_line {
            ($level:ident, $message:literal, $($fields:tt)*) => {
                if span.is_disabled() {
                    tracing::$level!(
                        message = $message,
                        span.method = self.method.as_str(),
                        span.route = route,
                        span.request_id = id,
                        span.trace_id = self.trace.trace_id.as_str(),
                        $($fields)*
                    );
                } else {
                    span.in_scope(|| tracing::$level!(message = $message, $($fields)*));
                }
            };
        }
        // Every server error at ERROR with what caused it; the client saw a generic problem.
        if status.is_server_error() {
            let cause = response
                .extensions()
                .get::<ErrorCause>()
                .map_or("no cause recorded", |c| c.0.as_str());
            access_line!(
                error,
                "request failed",
                status = status_code,
                latency_ms,
                cause
            );
        } else {
            // Straight to the log's writer when the subscriber can take it
            // (`telemetry::direct`), else as the event.
            let written = span.is_disabled()
                && tracing::enabled!(tracing::Level::INFO)
                && telemetry::write_access_line(&AccessLine {
                    target: module_path!(),
                    method: self.method.as_str(),
                    route,
                    request_id: id,
                    trace_id: self.trace.trace_id.as_str(),
                    status: status_code,
                    latency,
                });
            if !written {
                access_line!(info, "request", status = status_code, latency_ms);
            }
        }

        let headers = response.headers_mut();
        headers.entry(request_id::HEADER).or_insert(self.request_id);
        if let Ok(value) = HeaderValue::from_bytes(&self.trace.response_header()) {
            headers.insert(TRACERESPONSE, value);
        }
        response
    }
}
