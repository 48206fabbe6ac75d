//! The outermost per-route layer: the request id, the trace context, the HTTP metrics and the
//! access-log line, in one middleware (each layer of its own boxed a future and cloned a
//! service per request).
//!
//! A request gets a span (`request`, carrying method, route, request id and trace id) only
//! when DEBUG is enabled, for the lines the request logs along the way; at INFO the one
//! access-log event carries those fields itself and the JSON line shows them as the same
//! `span` object.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::{problem_for_bare_error, ErrorCause};
use crate::metrics::{Metrics, UNMATCHED_ROUTE};
use crate::request_id;
use crate::telemetry::TraceContext;

/// Logs, counts and names every request: `x-request-id` (the client's when acceptable, else
/// a fresh one) and `traceresponse` on the answer, one access-log line (status and latency;
/// on a server error, at ERROR with its cause), `http_requests_total` and
/// `http_request_duration_seconds`. Never bodies, never headers that may hold credentials.
pub async fn observe(
    State(metrics): State<Arc<Metrics>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request_id::accept_or_make(request.headers_mut());
    let trace = TraceContext::from_headers(request.headers());
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    let series = metrics.http_series(&method, route);
    let _in_flight = series.enter();
    let id = request_id.to_str().unwrap_or_default();
    let span = tracing::debug_span!(
        "request",
        method = method.as_str(),
        route,
        request_id = id,
        trace_id = trace.trace_id.as_str()
    );

    let response = next.run(request).instrument(span.clone()).await;
    let mut response = problem_for_bare_error(response);

    let latency = started.elapsed();
    let status = response.status();
    series.observe(status, latency);
    let status_code = status.as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    // With a span the line is written inside it; without, it carries the span's fields.
    macro_rules! access_line {
        ($level:ident, $($fields:tt)*) => {
            if span.is_disabled() {
                tracing::$level!(
                    span.method = method.as_str(),
                    span.route = route,
                    span.request_id = id,
                    span.trace_id = trace.trace_id.as_str(),
                    $($fields)*
                );
            } else {
                span.in_scope(|| tracing::$level!($($fields)*));
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
            status = status_code,
            latency_ms,
            cause,
            "request failed"
        );
    } else {
        access_line!(info, status = status_code, latency_ms, "request");
    }

    let headers = response.headers_mut();
    if !headers.contains_key(&request_id::HEADER) {
        headers.insert(request_id::HEADER, request_id);
    }
    if let Ok(value) = HeaderValue::try_from(trace.response_header()) {
        headers.insert("traceresponse", value);
    }
    response
}
