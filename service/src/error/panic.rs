//! The answer to a handler that panicked.

use axum::body::Body;
use axum::response::Response;
use tower_http::catch_panic::ResponseForPanic;

use super::{internal_error, ErrorCause};

/// [`panic_response`] for tower-http's `CatchPanicLayer`, as a type the app's layers can name.
#[derive(Clone, Copy)]
pub struct PanicAnswer;

impl ResponseForPanic for PanicAnswer {
    type ResponseBody = Body;

    fn response_for_panic(&mut self, payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
        panic_response(payload)
    }
}

/// The answer to a handler that panicked: a plain 500 problem, the panic message kept for
/// the access log.
fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a payload that is not text".to_owned());
    internal_error(ErrorCause::new(format!("panic: {message}")))
}
