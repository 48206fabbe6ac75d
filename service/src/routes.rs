//! HTTP resources, one module each; `app::router` merges their routes.

pub mod docs;
pub mod meta;
pub mod orders;

use axum::routing::MethodRouter;
use axum::Router;

use crate::state::AppState;

/// A router and the path templates it routes. The access layer is put around the whole
/// router once, not around each route (`Router::layer` would put a boxed service and a boxed
/// future more on every request), so it cannot read the template axum matched: it matches
/// the request's path against these instead.
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    templates: Vec<String>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    /// `Router::route`, the template recorded.
    pub fn route(mut self, template: &str, handlers: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(template, handlers);
        self.templates.push(template.to_owned());
        self
    }

    /// `Router::merge`, both routes' templates recorded.
    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.templates.extend(other.templates);
        self
    }

    /// The router and its templates.
    pub fn into_parts(self) -> (Router<AppState>, Vec<String>) {
        (self.router, self.templates)
    }
}
