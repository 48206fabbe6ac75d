//! The answer to a handler that panicked.
//!
//! Written here rather than taken from tower-http: its `CatchPanic` boxes every answer's body
//! (its body type is a boxed one), and the layers above box it once more into axum's, two
//! allocations on every request for the rare one that panics. This one passes the answer
//! through as it is.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::Response;
use tower::{Layer, Service};

use super::{internal_error, ErrorCause};

/// A panic while the service below makes its answer (in its call or in its future) is
/// answered with a plain 500 problem, the panic message kept for the access log.
#[derive(Clone, Copy)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// See [`CatchPanicLayer`].
#[derive(Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S, R> Service<R> for CatchPanic<S>
where
    S: Service<R, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Caught<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(answer) => Caught::Answering { answer },
            Err(payload) => Caught::Panicked {
                payload: Some(payload),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer below, or the answer to its panic.
    #[project = CaughtProjection]
    pub enum Caught<F> {
        Answering { #[pin] answer: F },
        Panicked { payload: Option<Box<dyn Any + Send + 'static>> },
    }
}

impl<F> Future for Caught<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CaughtProjection::Answering { answer } => {
                match catch_unwind(AssertUnwindSafe(|| answer.poll(cx))) {
                    Ok(polled) => polled,
                    Err(payload) => Poll::Ready(Ok(panic_response(payload))),
                }
            }
            CaughtProjection::Panicked { payload } => Poll::Ready(Ok(panic_response(
                payload
                    .take()
                    .unwrap_or_else(|| Box::new("polled again after a panic")),
            ))),
        }
    }
}

/// The answer to a handler that panicked: a plain 500 problem, the panic message kept for
/// the access log.
fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a payload that is not text".to_owned());
    internal_error(ErrorCause::new(format!("panic: {message}")))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use tower::ServiceExt;

    use super::*;

    async fn answer_of<S>(service: S) -> Response
    where
        S: Service<(), Response = Response, Error = Infallible>,
    {
        match CatchPanicLayer.layer(service).oneshot(()).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    fn cause(response: &Response) -> &str {
        response
            .extensions()
            .get::<ErrorCause>()
            .map_or("", |cause| cause.0.as_str())
    }

    #[tokio::test]
    async fn a_panic_in_the_answer_or_in_the_call_is_a_500_with_its_message() {
        let in_answer = answer_of(tower::service_fn(|()| async {
            if true {
                panic!("the store is on fire");
            }
            Ok::<Response, Infallible>(Response::default())
        }))
        .await;
        assert_eq!(in_answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(cause(&in_answer), "panic: the store is on fire");

        let in_call = answer_of(tower::service_fn(
            |()| -> std::future::Ready<Result<Response, Infallible>> { panic!("{} routes", 3) },
        ))
        .await;
        assert_eq!(in_call.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(cause(&in_call), "panic: 3 routes");
    }

    #[tokio::test]
    async fn an_answer_passes_through_as_it_is() {
        let answer = answer_of(tower::service_fn(|()| async {
            Ok::<Response, Infallible>(Response::new(axum::body::Body::from("plain")))
        }))
        .await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert!(answer.extensions().get::<ErrorCause>().is_none());
    }
}
