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
/// path itself to name the route, and the router's own match then copied every path parameter
/// into a request extension (a map, a name and a value per parameter, freed with the
/// request): about 2 000 of a GET's 27 500 whole-server instructions. The one handler that
/// takes a parameter reads it from the path (`OrderId`). Method dispatch, `405` with `Allow`
/// and `HEAD` stay axum's (`MethodRouter`). A clone is every route's handlers: the server
/// clones the app once per connection and calls it in place (`server/in_place.rs`).
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Method, StatusCode};
    use axum::routing::{any, get};
    use tower::ServiceExt;

    use super::*;

    fn routed() -> Routed {
        Routed::new(
            vec![
                ("/orders".to_owned(), get(|| async { "list" })),
                (
                    "/orders/{id}".to_owned(),
                    get(|| async { "one" }).patch(|| async { "changed" }),
                ),
            ],
            any(|| async { StatusCode::NOT_FOUND }),
        )
    }

    async fn answer(method: Method, path: &str) -> (StatusCode, Option<String>, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("request");
        let response = routed().oneshot(request).await.expect("infallible");
        let status = response.status();
        let allow = response
            .headers()
            .get(header::ALLOW)
            .map(|value| value.to_str().unwrap_or_default().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        (status, allow, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn each_path_reaches_its_templates_handlers_and_the_rest_the_fallback() {
        assert_eq!(answer(Method::GET, "/orders").await.2, "list");
        assert_eq!(answer(Method::GET, "/orders/7").await.2, "one");
        assert_eq!(answer(Method::PATCH, "/orders/7").await.2, "changed");
        assert_eq!(answer(Method::HEAD, "/orders/7").await.0, StatusCode::OK);
        let (status, allow, _) = answer(Method::DELETE, "/orders/7").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(allow.as_deref(), Some("GET,HEAD,PATCH"));
        for path in ["/", "/orders/", "/orders/7/items", "/nope"] {
            assert_eq!(
                answer(Method::GET, path).await.0,
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
    }

    #[test]
    fn templates_are_found_by_index_and_a_conflict_is_refused() {
        let routed = routed();
        assert_eq!(routed.paths().find("/orders/12"), Some(1));
        assert_eq!(routed.paths().templates()[1], "/orders/{id}");
        assert_eq!(routed.paths().find("/health"), None);
        let conflicting = std::panic::catch_unwind(|| {
            Routed::new(
                vec![
                    ("/orders/{id}".to_owned(), get(|| async {})),
                    ("/orders/{name}".to_owned(), get(|| async {})),
                ],
                any(|| async {}),
            )
        });
        assert!(conflicting.is_err());
    }
}
