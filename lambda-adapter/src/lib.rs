//! What the Lambda shell needs beyond the shared router: the paths API Gateway sends, the
//! invocation's request id, and the EMF line after each invocation.
//!
//! Kept out of the `order-service` library so the container build never compiles Lambda code.

pub mod migrate;

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::Response;
use http::header::{HeaderValue, LINK, LOCATION};
use http::uri::{PathAndQuery, Uri};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use order_service::metrics::emf::{EmfExporter, NAMESPACE};
use order_service::metrics::Metrics;
use order_service::{router, AppState};
use tower::Service;

/// `router(state)` as the Lambda serves it: request paths without the API Gateway stage, the
/// Lambda request id as `x-request-id` when the client sent none, `Location` and `Link` that
/// the calling client can follow, and the metrics of each invocation written as EMF once its
/// response is ready.
pub fn handler(
    state: AppState,
    emf: Arc<EmfWriter>,
) -> impl Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone {
    // Called in place, not cloned per invocation: a clone is every route's handlers. The
    // lock is held only while the call makes the answer's future.
    let router = Arc::new(Mutex::new(router(state)));
    tower::service_fn(move |mut request: Request| {
        let (router, emf) = (Arc::clone(&router), Arc::clone(&emf));
        async move {
            let client_prefix = strip_stage(&mut request);
            use_invocation_id(&mut request);
            use_xray_trace(&mut request);
            let answer = order_service::sync::lock(&router).call(request);
            let mut response = answer.await?;
            if let Some(prefix) = client_prefix {
                prefix_links(&mut response, &prefix);
            }
            emf.flush();
            Ok(response)
        }
    })
}

/// Gives the router the path it routes on, and returns the part of the client's URL path
/// that comes before it (`/prod` on a REST API's default endpoint), if any.
///
/// `lambda_http` builds the request path from the event's path: unless
/// `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set, it prefixes `/{stage}` for any stage but
/// `$default`, except when the path already starts with `/{stage}/`. That is undone here
/// from the event's own path (`raw_http_path`), so the outcome does not depend on the stage's
/// name or on that variable:
/// - REST API (v1): the event's `path` is the resource path, without the stage; routes take
///   it as it is. The client's URL path is `requestContext.path`, so what precedes the
///   resource path there (the stage, or a custom domain's base path) is the client prefix.
/// - HTTP API (v2): a named stage is the first segment of `rawPath` and is removed once; it is
///   also the client prefix.
/// - `$default` stages, Function URLs and ALB: the path is already the route.
pub fn strip_stage(request: &mut Request) -> Option<String> {
    let raw = request.raw_http_path().to_owned();
    let (path, prefix) = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => {
            let client_path = context.path.clone().unwrap_or_default();
            let prefix = client_path
                .strip_suffix(raw.as_str())
                .filter(|p| !p.is_empty())
                .map(str::to_owned);
            (raw, prefix)
        }
        Some(RequestContext::ApiGatewayV2(context)) => {
            let stage = context
                .stage
                .clone()
                .filter(|s| !s.is_empty() && s != "$default")?;
            let prefix = format!("/{stage}");
            match raw.strip_prefix(&prefix) {
                Some("") => ("/".to_owned(), Some(prefix)),
                Some(rest) if rest.starts_with('/') => (rest.to_owned(), Some(prefix)),
                _ => (raw, None),
            }
        }
        _ => return None,
    };
    if path.is_empty() || path == request.uri().path() {
        return prefix;
    }
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    prefix
}

/// `Location: /orders/7` and `Link: </orders?…>` are relative to the service's root; a client
/// that called `https://…/prod/orders` must get `/prod/orders/7` to follow them.
fn prefix_links(response: &mut Response, prefix: &str) {
    let headers = response.headers_mut();
    if let Some(location) = headers.get(LOCATION).and_then(|v| v.to_str().ok()) {
        if location.starts_with('/') {
            if let Ok(value) = HeaderValue::from_str(&format!("{prefix}{location}")) {
                headers.insert(LOCATION, value);
            }
        }
    }
    let links: Vec<HeaderValue> = headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| HeaderValue::from_str(&v.replace("</", &format!("<{prefix}/"))).ok())
        .collect();
    if !links.is_empty() {
        headers.remove(LINK);
        for link in links {
            headers.append(LINK, link);
        }
    }
}

/// Without a trace from the caller or the event source, the invocation's X-Ray trace (from the
/// Runtime API) becomes the request's trace, so the access log names the trace X-Ray shows.
fn use_xray_trace(request: &mut Request) {
    if request.headers().contains_key("traceparent")
        || request.headers().contains_key("x-amzn-trace-id")
    {
        return;
    }
    let trace = request
        .lambda_context_ref()
        .and_then(|context| context.xray_trace_id.as_deref())
        .and_then(|id| HeaderValue::from_str(id).ok());
    if let Some(trace) = trace {
        request.headers_mut().insert("x-amzn-trace-id", trace);
    }
}

/// Without a client-sent `x-request-id`, the Lambda request id becomes the request id: the
/// access log, the response header and Lambda's own REPORT line then share one id.
fn use_invocation_id(request: &mut Request) {
    if request.headers().contains_key("x-request-id") {
        return;
    }
    let id = request
        .lambda_context_ref()
        .map(|context| context.request_id.as_str())
        .filter(|id| !id.is_empty())
        .and_then(|id| HeaderValue::from_str(id).ok());
    if let Some(id) = id {
        request.headers_mut().insert("x-request-id", id);
    }
}

/// Writes the registry's changes since the previous flush as EMF lines (usually one).
pub struct EmfWriter {
    metrics: Arc<Metrics>,
    enabled: bool,
    inner: Mutex<(EmfExporter, Box<dyn Write + Send>)>,
}

impl EmfWriter {
    /// EMF to standard output, where Lambda sends it to CloudWatch Logs.
    pub fn stdout(state: &AppState) -> Self {
        Self::new(state, Box::new(std::io::stdout()))
    }

    pub fn new(state: &AppState, sink: Box<dyn Write + Send>) -> Self {
        let exporter = EmfExporter::new(NAMESPACE, state.config.environment.clone());
        Self {
            metrics: state.metrics.clone(),
            enabled: state.config.enable_metrics,
            inner: Mutex::new((exporter, sink)),
        }
    }

    pub fn flush(&self) {
        if !self.enabled {
            return;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (exporter, sink) = &mut *inner;
        for line in exporter.flush(self.metrics.registry(), now_ms) {
            // A closed stdout loses the metrics, not the response.
            let _ = writeln!(sink, "{line}");
        }
        let _ = sink.flush();
    }
}
