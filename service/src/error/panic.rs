//! The answer to a handler that panicked.

use axum::response::Response;

use super::{internal_error, ErrorCause};

/// The answer to a handler that panicked: a plain 500 problem, the panic message kept for
/// the access log.
pub fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a payload that is not text".to_owned());
    internal_error(ErrorCause::new(format!("panic: {message}")))
}
