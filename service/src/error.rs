//! `ApiError`: every failure a client can see, answered as RFC 9457 `application/problem+json`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::domain::{OrderStatus, ValidationErrors};
use crate::store::StoreError;

mod cause;
mod panic;
mod problem;

pub use cause::{error_chain, ErrorCause};
pub use panic::{CatchPanic, CatchPanicLayer};
pub use problem::{internal_error, problem, problem_for_bare_error, Problem, PROBLEM_JSON};

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
        // A busy or unreachable database: the request may be retried a little later.
        let retry_later = matches!(self, ApiError::StoreUnavailable(_));
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
        if retry_later {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(cause) = cause {
            response.extensions_mut().insert(cause);
        }
        response
    }
}
/// JSON body extractor whose rejections come back as problems.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// Query extractor whose rejections come back as problems.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
