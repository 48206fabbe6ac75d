//! The OpenAPI document, generated from the handlers' types, and a page that shows it.

use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_scalar::Scalar;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Order Service API", description = "Orders: create, list, read, change status."),
    paths(
        super::meta::welcome,
        super::meta::health,
        super::meta::ready,
        super::orders::list_orders,
        super::orders::create_order,
        super::orders::get_order,
        super::orders::update_order_status,
    ),
    modifiers(&BearerAuth),
    tags((name = "orders"), (name = "service"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs_page))
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Scalar's page renders the document in the browser; nothing is downloaded at build time.
async fn docs_page() -> Html<String> {
    Html(Scalar::new(ApiDoc::openapi()).to_html())
}
