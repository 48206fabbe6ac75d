//! What the Lambda shell needs beyond the shared router: the paths API Gateway sends, the
//! invocation's request id, and the EMF line after each invocation.
//!
//! Kept out of the `order-service` library so the container build never compiles Lambda code.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::Response;
use http::header::HeaderValue;
use http::uri::{PathAndQuery, Uri};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use order_service::metrics::emf::{EmfExporter, NAMESPACE};
use order_service::metrics::Metrics;
use order_service::{router, AppState};
use tower::{Service, ServiceBuilder};

/// `router(state)` as the Lambda serves it: request paths without the API Gateway stage, the
/// Lambda request id as `x-request-id` when the client sent none, and the metrics of each
/// invocation written as EMF once its response is ready.
pub fn handler(
    state: AppState,
    emf: Arc<EmfWriter>,
) -> impl Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone {
    ServiceBuilder::new()
        .map_request(prepare)
        .map_response(move |response: Response| {
            emf.flush();
            response
        })
        .service(router(state))
}

fn prepare(mut request: Request) -> Request {
    strip_stage(&mut request);
    use_invocation_id(&mut request);
    request
}

/// Removes the API Gateway stage (`/prod/orders/1` → `/orders/1`) so routes match under any
/// stage. HTTP APIs put a named stage into `rawPath` themselves; for REST APIs `lambda_http`
/// prefixes it unless `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set, and only when the
/// event's path does not already start with it. `$default` (HTTP API, Function URL) and ALB
/// have no stage.
pub fn strip_stage(request: &mut Request) {
    let (stage, in_raw_path) = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => (context.stage.clone(), false),
        Some(RequestContext::ApiGatewayV2(context)) => (context.stage.clone(), true),
        _ => return,
    };
    let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") else {
        return;
    };
    let prefix = format!("/{stage}");
    if !in_raw_path && starts_with_segment(request.raw_http_path(), &prefix) {
        return; // lambda_http left this path as it was: the stage is not in it.
    }
    let path = request.uri().path();
    if !starts_with_segment(path, &prefix) {
        return;
    }
    let rest = match &path[prefix.len()..] {
        "" => "/",
        rest => rest,
    };
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

fn starts_with_segment(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
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
