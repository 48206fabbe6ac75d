//! HTTP resources, one module each; `app::router` merges their routes into one [`Routed`].

pub mod docs;
pub mod meta;
pub mod orders;

use std::convert::Infallible;

use axum::extract::Request;
use axum::routing::MethodRouter;
use tower::{Layer, Service};

use crate::routing::Routed;
use crate::state::AppState;

/// Path templates and the handlers of each, as `Router::route` takes them.
#[derive(Default)]
pub struct Routes {
    routes: Vec<(String, MethodRouter<AppState>)>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn route(mut self, template: &str, handlers: MethodRouter<AppState>) -> Self {
        self.routes.push((template.to_owned(), handlers));
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.routes.extend(other.routes);
        self
    }

    /// `layer` around every route's handlers.
    pub fn layer<L>(self, layer: L) -> Self
    where
        L: Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: axum::response::IntoResponse + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        let routes = self
            .routes
            .into_iter()
            .map(|(template, handlers)| (template, handlers.layer(layer.clone())))
            .collect();
        Self { routes }
    }

    /// The routes, served with `state`; a path no template matches goes to `fallback`
    /// ([`Routed::new`]).
    pub fn with_state(self, state: AppState, fallback: MethodRouter<AppState>) -> Routed {
        let routes = self
            .routes
            .into_iter()
            .map(|(template, handlers)| (template, handlers.with_state(state.clone())))
            .collect();
        Routed::new(routes, fallback.with_state(state))
    }
}
