//! The RFC 9457 problem body, and the problem shape for error answers that did not come from
//! `ApiError`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::ErrorCause;
use crate::domain::FieldError;

pub const PROBLEM_JSON: &str = "application/problem+json";

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

/// A plain 500 problem; what caused it is kept for the access log, never sent.
pub fn internal_error(cause: ErrorCause) -> Response {
    let mut response = problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error".to_owned(),
        Vec::new(),
    );
    response.extensions_mut().insert(cause);
    response
}

/// Gives every error response that did not come from `ApiError` (unknown route, wrong
/// method, body over the limit, timeout, panic) the same problem+json shape. Called by the
/// access layer on every answer, before it is logged.
pub fn problem_for_bare_error(response: Response) -> Response {
    let status = response.status();
    // A success is never a problem: its headers are not looked at.
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return response;
    }
    let detail = match status {
        StatusCode::NOT_FOUND => "no route matches this path",
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this path",
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than the limit",
        // Only the request decoding answers a bare 415, with `Accept-Encoding`.
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            "the request body's Content-Encoding is not one this service decodes (see Accept-Encoding)"
        }
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
