//! The OpenAPI document, generated from the handlers' types, and a page that shows it.

use std::sync::LazyLock;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::Routes;

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

pub fn router() -> Routes {
    let mut router = Routes::new()
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs_page))
        .route("/docs/scalar.js", get(whole_script))
        .route(
            &content_path("scalar", SCALAR_HEX),
            get(whole_script_immutable),
        )
        .route(LOADER_PATH.as_str(), get(loader_script));
    for part in SCALAR_PARTS {
        router = router.route(
            &content_path("scalar-part", part.hex),
            get(move |headers: HeaderMap| async move { part_response(part, &headers) }),
        );
    }
    router
}

/// `/docs/<name>.<digest>.js`: a script at a path named by its content (the first 16 bytes of
/// its SHA-384, in hex), so a browser may keep it for good and an upgrade, whose page names
/// other paths, never meets a stale copy that fails the page's integrity checks.
fn content_path(name: &str, hex: &str) -> String {
    format!("/docs/{name}.{hex}.js")
}

/// The first 16 bytes of a SHA-384 in hex, and the Subresource Integrity value.
fn content_address(bytes: &[u8]) -> (String, String) {
    use base64::Engine;
    use sha2::{Digest, Sha384};
    let digest = Sha384::digest(bytes);
    let hex = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let sri = base64::engine::general_purpose::STANDARD.encode(digest);
    (hex, format!("sha384-{sri}"))
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

/// One part of the API reference script (Scalar), compressed by `build.rs`.
///
/// The script is a pinned copy from the npm registry: the page works without reaching any
/// other host (air-gapped clusters, strict CSPs). `docs/fetch-scalar.sh` fetches it and checks
/// it; `docs/scalar.pin` records the version, the npm tarball's integrity and the script's
/// own. It is served in parts so that each response fits a Lambda function's 1 MB limit
/// behind an ALB (see `build.rs`); the loader joins them in the browser.
struct ScalarPart {
    /// The SRI value of the part's bytes, which the loader passes to `fetch`.
    integrity: &'static str,
    /// The start of its SHA-384 in hex: its path.
    hex: &'static str,
    /// Its length decoded.
    len: usize,
    br: &'static [u8],
}

// SCALAR_PARTS, SCALAR_INTEGRITY (the whole script's SRI value) and SCALAR_HEX.
include!(concat!(env!("OUT_DIR"), "/scalar_parts.rs"));

const SCALAR_PIN: &str = include_str!("docs/scalar.pin");

/// Fetches the parts (each checked against its own hash), joins them and runs the result.
const LOADER_JS: &str = include_str!("docs/scalar-loader.js");
static LOADER: LazyLock<(String, String)> = LazyLock::new(|| content_address(LOADER_JS.as_bytes()));
static LOADER_PATH: LazyLock<String> = LazyLock::new(|| content_path("scalar-loader", &LOADER.0));

/// Nothing but this service's own origin: no CDN, no fonts host. The one inline script
/// allowed is the joined API reference script, by its hash. Scalar injects its styles at
/// run time, hence `'unsafe-inline'` for styles only.
static DOCS_CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src 'self' '{SCALAR_INTEGRITY}'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
});

/// A value of `docs/scalar.pin` (`key = value` lines).
pub fn scalar_pin(key: &str) -> Option<&'static str> {
    SCALAR_PIN.lines().find_map(|line| {
        let (k, v) = line.split_once(" = ")?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The page: the document as a JSON data block, which the script renders, and the loader with
/// the parts' paths and hashes. Paths are relative, so the page also works behind a path
/// prefix (an API Gateway stage).
static DOCS_HTML: LazyLock<String> = LazyLock::new(|| {
    // `<` only occurs inside JSON strings; escaped, no text can close the element early.
    let spec = OPENAPI_JSON.replace('<', "\\u003c");
    let parts: Vec<[String; 2]> = SCALAR_PARTS
        .iter()
        .map(|part| {
            let path = content_path("scalar-part", part.hex);
            [
                path.trim_start_matches('/').to_owned(),
                part.integrity.to_owned(),
            ]
        })
        .collect();
    // Paths and SRI values hold no `'`, so the JSON stays inside the attribute.
    let parts = serde_json::to_string(&parts).unwrap_or_default();
    let loader = LOADER_PATH.trim_start_matches('/');
    let integrity = &LOADER.1;
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Order Service API</title>\n</head>\n<body>\n\
         <script id=\"api-reference\" type=\"application/json\" \
         data-configuration='{{\"withDefaultFonts\":false,\"defaultOpenAllTags\":true}}'>{spec}</script>\n\
         <script src=\"{loader}\" integrity=\"{integrity}\" data-parts='{parts}'></script>\n\
         </body>\n</html>\n"
    )
});

async fn docs_page() -> Response {
    let mut response = Html(DOCS_HTML.as_str()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        // Only ASCII goes in; were it ever refused, nothing at all may load.
        HeaderValue::try_from(DOCS_CSP.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Revalidated on every visit, so it always names the current scripts' paths.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

async fn loader_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, JAVASCRIPT),
            (header::CACHE_CONTROL, IMMUTABLE),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        LOADER_JS,
    )
        .into_response()
}

/// Whether the request's `Accept-Encoding` takes brotli: `br`, or `*` when `br` is not named,
/// with a weight above 0 (none given is 1; one that does not parse accepts nothing).
fn accepts_brotli(headers: &HeaderMap) -> bool {
    let (mut br, mut any) = (None, None);
    let items = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for item in items {
        let mut params = item.split(';');
        let coding = params.next().unwrap_or_default().trim();
        let weight = params
            .find_map(|param| {
                let (name, value) = param.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| value.trim().parse::<f32>().unwrap_or(0.0))
            })
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("br") {
            br = Some(weight);
        } else if coding == "*" {
            any = Some(weight);
        }
    }
    br.or(any).is_some_and(|weight| weight > 0.0)
}

impl ScalarPart {
    /// The part's own bytes, from its brotli copy.
    fn decoded(&self) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut bytes = Vec::with_capacity(self.len);
        brotli::Decompressor::new(self.br, 64 * 1024).read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// A part as stored, brotli-compressed, when the client accepts that (`Content-Encoding`
/// says so, which also keeps any compression layer from compressing it again); else decoded.
fn part_response(part: &ScalarPart, request: &HeaderMap) -> Response {
    let brotli = accepts_brotli(request);
    let body = if brotli {
        Body::from(part.br)
    } else {
        match part.decoded() {
            Ok(bytes) => Body::from(bytes),
            Err(error) => return decode_failed(&error),
        }
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, JAVASCRIPT),
            (header::CACHE_CONTROL, IMMUTABLE),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::VARY, "accept-encoding"),
        ],
        body,
    )
        .into_response();
    if brotli {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
    }
    response
}

/// The embedded copies are checked by unit tests; should one still not decode, say so.
fn decode_failed(error: &std::io::Error) -> Response {
    tracing::error!(%error, "the embedded API reference script does not decode");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// The whole script in one response, uncompressed, for pages of earlier releases, which load
/// it from `/docs/scalar.js` or its content-addressed path. It does not fit an ALB's limit
/// for a Lambda function; the container and a Function URL serve it.
async fn whole_script() -> Response {
    match &*WHOLE_SCRIPT {
        Ok(script) => (
            [
                (header::CONTENT_TYPE, JAVASCRIPT),
                (header::CACHE_CONTROL, "public, max-age=86400"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            script.clone(),
        )
            .into_response(),
        Err(error) => decode_failed(error),
    }
}

/// Decoded on first use only: a request for it then costs no more than one for a part.
static WHOLE_SCRIPT: LazyLock<Result<Bytes, std::io::Error>> = LazyLock::new(|| {
    let mut script = Vec::with_capacity(SCALAR_PARTS.iter().map(|part| part.len).sum());
    for part in SCALAR_PARTS {
        script.extend_from_slice(&part.decoded()?);
    }
    Ok(Bytes::from(script))
});

/// As [`whole_script`], cached as immutable: its path changes with it.
async fn whole_script_immutable() -> Response {
    let mut response = whole_script().await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part decodes to bytes with its own hash, and the parts join into the very
    /// script pinned when it was fetched from npm.
    #[test]
    fn the_parts_join_into_the_pinned_script() {
        let mut script = Vec::new();
        for part in SCALAR_PARTS {
            let bytes = part.decoded().expect("the brotli copy decodes");
            assert_eq!(bytes.len(), part.len);
            assert_eq!(
                content_address(&bytes),
                (part.hex.to_owned(), part.integrity.to_owned())
            );
            script.extend(bytes);
        }
        assert!(
            SCALAR_PARTS.len() > 1,
            "one part would not fit behind an ALB"
        );
        let whole = content_address(&script);
        assert_eq!(whole, (SCALAR_HEX.to_owned(), SCALAR_INTEGRITY.to_owned()));
        assert_eq!(scalar_pin("script_integrity"), Some(SCALAR_INTEGRITY));
        assert!(scalar_pin("tarball_integrity").is_some_and(|v| v.starts_with("sha512-")));
    }

    /// The page names the loader by its hash, every part by its own, and its CSP runs the
    /// joined script only by the pinned script's hash.
    #[test]
    fn the_page_checks_the_loader_each_part_and_the_joined_script() {
        let (hex, sri) = content_address(LOADER_JS.as_bytes());
        assert!(DOCS_HTML.contains(&format!(
            "<script src=\"docs/scalar-loader.{hex}.js\" integrity=\"{sri}\""
        )));
        for part in SCALAR_PARTS {
            assert!(DOCS_HTML.contains(&format!(
                "[\"docs/scalar-part.{}.js\",\"{}\"]",
                part.hex, part.integrity
            )));
        }
        assert!(DOCS_CSP.contains(&format!("script-src 'self' '{SCALAR_INTEGRITY}';")));
        assert!(!DOCS_CSP.contains("unsafe-eval") && !DOCS_CSP.contains("blob:"));
    }

    #[test]
    fn the_page_loads_nothing_from_another_host() {
        assert!(!DOCS_HTML.contains("src=\"http") && !DOCS_HTML.contains("src=\"//"));
        assert!(!DOCS_HTML.contains("cdn."));
        // Exactly the two elements: the data block cannot be closed early by the document.
        assert_eq!(DOCS_HTML.matches("</script>").count(), 2);
    }

    #[test]
    fn brotli_goes_only_to_clients_that_accept_it() {
        let cases = [
            (None, false),
            (Some(""), false),
            (Some("gzip, deflate, br, zstd"), true),
            (Some("gzip, deflate"), false),
            (Some("BR;Q=0.5, gzip;q=0.8"), true),
            (Some("br;q=0, gzip"), false),
            (Some("*"), true),
            (Some("*;q=0, gzip"), false),
            (Some("br, *;q=0"), true),
            (Some("br;q=0, *"), false),
            (Some("identity"), false),
            (Some("brotli"), false),
            (Some("br;q=nonsense"), false),
            (Some(" br ; q=1.0 "), true),
        ];
        for (value, want) in cases {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
            }
            assert_eq!(accepts_brotli(&headers), want, "{value:?}");
        }
        // Several header lines count together.
        let mut headers = HeaderMap::new();
        headers.append(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        headers.append(header::ACCEPT_ENCODING, HeaderValue::from_static("br"));
        assert!(accepts_brotli(&headers));
    }
}
