//! `ApiError`: every failure a client can see, answered as RFC 9457 `application/problem+json`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{FieldError, OrderStatus, ValidationErrors};
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(&'static str),
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body is larger than the limit")]
    PayloadTooLarge,
    #[error("expected a request with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("the request has invalid fields")]
    Validation(ValidationErrors),
    #[error("the Idempotency-Key was already used with a different request body")]
    IdempotencyMismatch,
    #[error("a valid bearer API key is required for this operation")]
    Unauthorized,
    #[error("cannot change status from {} to {}", .from.as_str(), .to.as_str())]
    IllegalTransition { from: OrderStatus, to: OrderStatus },
    #[error("the order has changed since the version named in If-Match; read it again")]
    PreconditionFailed,
    #[error("the order store is full; no more orders can be created")]
    StoreFull,
    #[error("the service is not ready")]
    NotReady,
    #[error("the order store is unavailable, retry later")]
    StoreUnavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

/// The problem body. `detail` is the field FastAPI clients already read.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: String,
    #[schema(example = "Not Found")]
    pub title: String,
    #[schema(example = 404)]
    pub status: u16,
    #[schema(example = "Order not found")]
    pub detail: String,
    /// Field-level problems, on 422 validation errors only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// The internal cause of a 5xx, attached to the response for the access log to record.
/// It never reaches the client.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

impl ErrorCause {
    /// `error` and each of its sources, joined by ": ", with any URL credentials masked (a
    /// driver error may quote a connection string).
    pub fn from_error(error: &dyn std::error::Error) -> Self {
        Self::new(error_chain(error))
    }

    pub fn new(text: impl Into<String>) -> Self {
        Self(redact_url_credentials(&text.into()))
    }
}

/// `error` and each of its sources in one line, joined by ": ".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `scheme://user:password@host` → `scheme://***@host`, wherever it appears.
fn redact_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"')
            .unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                rest = &after[userinfo_end..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::IllegalTransition { .. } | ApiError::IdempotencyMismatch => {
                StatusCode::CONFLICT
            }
            ApiError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ApiError::StoreFull => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::NotReady | ApiError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The `detail` of a missing order, which clients of the earlier version read.
pub const ORDER_NOT_FOUND: &str = "Order not found";

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ApiError::NotFound(ORDER_NOT_FOUND),
            StoreError::IdempotencyMismatch => ApiError::IdempotencyMismatch,
            StoreError::Full { .. } => ApiError::StoreFull,
            StoreError::Unavailable(_) => ApiError::StoreUnavailable(error),
            // A lost compare-and-set is mapped by the handler, which knows the target status.
            StoreError::StatusConflict { .. } | StoreError::Internal(_) => {
                ApiError::Internal(error)
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::JsonSyntaxError(e) => ApiError::MalformedJson(e.body_text()),
            // Wrong types and missing fields: axum reports the path, e.g. `items[0].quantity`.
            JsonRejection::JsonDataError(e) => {
                ApiError::Validation(data_error(&e.body_text(), "body"))
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::MalformedJson(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Validation(data_error(&rejection.body_text(), "query"))
    }
}

/// Turns axum's "Failed to deserialize …: items[0].quantity: invalid type …" into a field
/// error for `items[0].quantity`; errors at the root (a missing field) go to `root`.
fn data_error(text: &str, root: &str) -> ValidationErrors {
    let message = text.split_once(": ").map_or(text, |(_, rest)| rest);
    match message.split_once(": ") {
        Some((path, reason)) if !path.contains(' ') => ValidationErrors::single(path, reason),
        _ => ValidationErrors::single(root, message),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Taken before `self` is consumed: the whole source chain, for the log only.
        let cause = status
            .is_server_error()
            .then(|| ErrorCause::from_error(&self));
        let (detail, errors) = match self {
            ApiError::Validation(ValidationErrors(errors)) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                (detail, errors)
            }
            other => (other.to_string(), Vec::new()),
        };
        let mut response = problem(status, detail, errors);
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(cause) = cause {
            response.extensions_mut().insert(cause);
        }
        response
    }
}

/// Builds a problem response for any status.
pub fn problem(status: StatusCode, detail: String, errors: Vec<FieldError>) -> Response {
    let body = Problem {
        kind: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        errors,
    };
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// JSON body extractor whose rejections come back as problems.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// Query extractor whose rejections come back as problems.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Gives every error response that did not come from `ApiError` (unknown route, wrong
/// method, body over the limit, timeout, panic) the same problem+json shape. Called by the
/// access layer on every answer, before it is logged.
pub fn problem_for_bare_error(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let detail = match status {
        StatusCode::NOT_FOUND => "no route matches this path",
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this path",
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than the limit",
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
            "the request took longer than the time limit"
        }
        StatusCode::INTERNAL_SERVER_ERROR => "internal error",
        _ => status.canonical_reason().unwrap_or("error"),
    };
    let (mut parts, _) = response.into_parts();
    if status.is_server_error() && parts.extensions.get::<ErrorCause>().is_none() {
        let cause = match status {
            StatusCode::GATEWAY_TIMEOUT => "timed out: no answer within REQUEST_TIMEOUT_MS",
            _ => "no cause recorded by the layer that answered",
        };
        parts.extensions.insert(ErrorCause::new(cause));
    }
    let mut replacement = problem(status, detail.to_owned(), Vec::new());
    // Keep headers such as `Allow` on 405, and the request id.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replacement
                .headers_mut()
                .insert(name.clone(), value.clone());
        }
    }
    *replacement.extensions_mut() = parts.extensions;
    replacement
}

/// The answer to a handler that panicked: a plain 500 problem, the panic message kept for
/// the access log.
pub fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a payload that is not text".to_owned());
    let mut response = problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error".to_owned(),
        Vec::new(),
    );
    response
        .extensions_mut()
        .insert(ErrorCause::new(format!("panic: {message}")));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_keep_their_chain_and_lose_url_credentials() {
        let io = std::io::Error::other("connect to postgres://app:s3cret@db:5432/orders refused");
        let store = StoreError::Unavailable(Box::new(io));
        let cause = ErrorCause::from_error(&ApiError::StoreUnavailable(store)).0;
        assert_eq!(
            cause,
            "the order store is unavailable, retry later: order store unavailable: \
             connect to postgres://***@db:5432/orders refused"
        );
        assert_eq!(
            redact_url_credentials("a http://h/x@y b postgres://u@h c"),
            "a http://h/x@y b postgres://***@h c"
        );
    }
}
