//! The app as hyper calls it on one connection.
//!
//! hyper-util's `TowerToHyperService` clones the service for every request, because a tower
//! service is called through `&mut` and hyper calls through `&`. For the app that clone is
//! every layer's shared state and both routers, on every request. A connection's requests
//! are called one at a time, so here the connection's own copy is called in place.

use std::cell::RefCell;
use std::convert::Infallible;

use axum::response::Response;

/// A tower service `S`, called by hyper in place.
pub struct InPlace<S>(RefCell<S>);

impl<S> InPlace<S> {
    pub fn new(service: S) -> Self {
        Self(RefCell::new(service))
    }
}

impl<S, R> hyper::service::Service<R> for InPlace<S>
where
    S: tower::Service<R, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = S::Future;

    fn call(&self, request: R) -> S::Future {
        // Borrowed only while the call makes the answer's future, which owns what it needs;
        // the app is always ready (`App::poll_ready`), so readiness is not polled.
        self.0.borrow_mut().call(request)
    }
}
