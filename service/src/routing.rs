//! [`Routed`]: each request to the handlers of the path template it matches.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::routing::MethodRouter;
use tower::Service;

/// The path templates of a [`Routed`], matched as axum's router matches them (with the same
/// `matchit`).
pub struct Paths {
    matcher: matchit::Router<usize>,
    templates: Vec<String>,
}

impl Paths {
    /// Where the template `path` matches is among [`Self::templates`], if one does.
    pub fn find(&self, path: &str) -> Option<usize> {
        self.matcher.at(path).ok().map(|found| *found.value)
    }

    pub fn templates(&self) -> &[String] {
        &self.templates
    }
}

/// Each request to the handlers of the template its path matches.
///
/// Written here rather than served by axum's `Router`: the access layer, outside, matches the
/// path itself to name the route, and the router's own match then copies every path
/// parameter into a request extension (an allocation for the map, one per parameter and
/// its name), which was a twelfth of a `GET /orders/{id}`. The one handler that takes a
/// parameter reads it from the path (`OrderId`). Method dispatch, `405` with `Allow` and
/// `HEAD` stay axum's (`MethodRouter`).
#[derive(Clone)]
pub struct Routed {
    paths: Arc<Paths>,
    handlers: Vec<MethodRouter>,
    fallback: MethodRouter,
}

impl Routed {
    /// `routes`, each a template and its handlers; a path no template matches goes to
    /// `fallback`.
    ///
    /// # Panics
    ///
    /// On a template axum's router would refuse too (a malformed or conflicting one): routes
    /// are code, and a router with a bad one must not start.
    pub fn new(routes: Vec<(String, MethodRouter)>, fallback: MethodRouter) -> Self {
        let mut matcher = matchit::Router::new();
        let mut templates = Vec::with_capacity(routes.len());
        let mut handlers = Vec::with_capacity(routes.len());
        for (index, (template, route)) in routes.into_iter().enumerate() {
            matcher
                .insert(template.as_str(), index)
                .unwrap_or_else(|error| panic!("route {template}: {error}"));
            templates.push(template);
            handlers.push(route);
        }
        Self {
            paths: Arc::new(Paths { matcher, templates }),
            handlers,
            fallback,
        }
    }

    pub fn paths(&self) -> &Arc<Paths> {
        &self.paths
    }
}

impl<B> Service<Request<B>> for Routed
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A `MethodRouter` is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let handlers = self
            .paths
            .find(request.uri().path())
            .and_then(|index| self.handlers.get_mut(index));
        match handlers {
            Some(handlers) => handlers.call(request),
            None => self.fallback.call(request),
        }
    }
}
