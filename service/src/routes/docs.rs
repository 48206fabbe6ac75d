//! The OpenAPI document, generated from the handlers' types, and a page that shows it.

use std::sync::LazyLock;

use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
        .route("/docs/scalar.js", get(docs_script))
        .route(SCALAR_PATH.as_str(), get(docs_script_immutable))
}

/// `/docs/scalar.<digest>.js`: the script at a path named by its content (the first 16 bytes
/// of its SHA-384, in hex), so a browser may keep it for good and an upgrade, whose page
/// names another path, never meets a stale copy that fails the page's integrity check.
static SCALAR_PATH: LazyLock<String> = LazyLock::new(|| {
    use sha2::{Digest, Sha384};
    let digest = Sha384::digest(SCALAR_JS);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("/docs/scalar.{hex}.js")
});

/// The script as [`docs_script`] serves it, cached as immutable: its path changes with it.
async fn docs_script_immutable() -> Response {
    let mut response = docs_script().await;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

/// The document, rendered once: it only changes with the code.
static OPENAPI_JSON: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string(&ApiDoc::openapi()).unwrap_or_default());

async fn openapi_json() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI_JSON.as_str(),
    )
}

/// The API reference script (Scalar), a pinned copy from the npm registry embedded in the
/// binary: the page works without reaching any other host (air-gapped clusters, strict
/// CSPs). `docs/fetch-scalar.sh` fetches it and checks it; `docs/scalar.pin` records the
/// version, the npm tarball's integrity and the script's own.
const SCALAR_JS: &[u8] = include_bytes!("docs/scalar-standalone.js");
const SCALAR_PIN: &str = include_str!("docs/scalar.pin");

/// Nothing but this service's own origin: no CDN, no fonts host, no inline script. Scalar
/// injects its styles at run time, hence `'unsafe-inline'` for styles only.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// A value of `docs/scalar.pin` (`key = value` lines).
pub fn scalar_pin(key: &str) -> Option<&'static str> {
    SCALAR_PIN.lines().find_map(|line| {
        let (k, v) = line.split_once(" = ")?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The page: the document as a JSON data block, which the script renders. The script's path
/// is relative, so the page also works behind a path prefix (an API Gateway stage).
static DOCS_HTML: LazyLock<String> = LazyLock::new(|| {
    // `<` only occurs inside JSON strings; escaped, no text can close the element early.
    let spec = OPENAPI_JSON.replace('<', "\\u003c");
    let integrity = scalar_pin("script_integrity").unwrap_or_default();
    let script = SCALAR_PATH.trim_start_matches('/');
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Order Service API</title>\n</head>\n<body>\n\
         <script id=\"api-reference\" type=\"application/json\" \
         data-configuration='{{\"withDefaultFonts\":false,\"defaultOpenAllTags\":true}}'>{spec}</script>\n\
         <script src=\"{script}\" integrity=\"{integrity}\"></script>\n</body>\n</html>\n"
    )
});

async fn docs_page() -> Response {
    let mut response = Html(DOCS_HTML.as_str()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Revalidated on every visit, so it always names the current script's path.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn docs_script() -> Response {
    (
        [
            // text/*: the Lambda shell returns it as text, within the response size limit.
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        SCALAR_JS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sha2::{Digest, Sha384};

    /// The embedded script is byte for byte the one pinned when it was fetched from npm.
    #[test]
    fn embedded_script_matches_its_pinned_integrity() {
        let digest = Sha384::digest(SCALAR_JS);
        let sri = format!(
            "sha384-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        );
        assert_eq!(scalar_pin("script_integrity"), Some(sri.as_str()));
        assert!(scalar_pin("tarball_integrity").is_some_and(|v| v.starts_with("sha512-")));
        assert!(DOCS_HTML.contains(&format!("integrity=\"{sri}\"")));
    }

    #[test]
    fn the_page_loads_nothing_from_another_host() {
        assert!(!DOCS_HTML.contains("src=\"http") && !DOCS_HTML.contains("src=\"//"));
        assert!(!DOCS_HTML.contains("cdn."));
        // Exactly the two elements: the data block cannot be closed early by the document.
        assert_eq!(DOCS_HTML.matches("</script>").count(), 2);
    }
}
