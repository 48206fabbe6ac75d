//! The answer to a handler that panicked.

use axum::http::StatusCode;
use axum::response::Response;

use super::{problem, ErrorCause};

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
