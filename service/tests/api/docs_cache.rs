//! The docs page loads its script from paths named by content, cached for good: after an
//! upgrade the page names new paths, so no browser meets a stale copy. The API reference
//! script comes in parts, each stored brotli-compressed and sent so to a client that accepts it.

use std::io::Read;

use axum::http::Method;
use base64::Engine;
use sha2::{Digest, Sha384};

use crate::support::{get, local_app, request, send, Reply};

/// `(hex, sri)`: the first 16 bytes of the SHA-384 in hex, and the Subresource Integrity value.
fn address(bytes: &[u8]) -> (String, String) {
    let digest = Sha384::digest(bytes);
    let hex = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let sri = base64::engine::general_purpose::STANDARD.encode(digest);
    (hex, format!("sha384-{sri}"))
}

fn assert_immutable(reply: &Reply, what: &str) {
    let cache = reply.header("cache-control").expect("cache-control");
    assert!(
        cache.contains("immutable") && cache.contains("max-age=31536000"),
        "{what}: {cache}"
    );
}

/// The value of an attribute of the loader's script element.
fn loader_attribute(html: &str, name: &str) -> String {
    let element = html
        .split("<script ")
        .find(|element| element.starts_with("src="))
        .and_then(|element| element.split('>').next())
        .expect("the loader's script element");
    let quote = if name == "data-parts" { '\'' } else { '"' };
    format!(" {element}")
        .split(&format!(" {name}={quote}"))
        .nth(1)
        .and_then(|rest| rest.split(quote).next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no {name} in {element}"))
}

#[tokio::test]
async fn the_docs_scripts_live_at_content_addressed_immutable_paths() {
    let app = local_app().await;
    let page = get(&app, "/docs").await;
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let html = String::from_utf8(page.body.clone()).expect("utf-8");

    let src = loader_attribute(&html, "src");
    let src = src.as_str();
    let loader = get(&app, &format!("/{src}")).await;
    assert_eq!(loader.status, 200, "{src}");
    let (hex, sri) = address(&loader.body);
    assert_eq!(src, format!("docs/scalar-loader.{hex}.js"));
    assert_eq!(loader_attribute(&html, "integrity"), sri);
    assert_immutable(&loader, src);

    let parts: Vec<(String, String)> =
        serde_json::from_str(&loader_attribute(&html, "data-parts")).expect("parts as JSON");
    assert!(parts.len() > 1, "{parts:?}");
    let mut script = Vec::new();
    for (src, integrity) in &parts {
        let part = get(&app, &format!("/{src}")).await;
        assert_eq!(part.status, 200, "{src}");
        assert_eq!(part.header("content-encoding"), None, "{src}");
        let (hex, sri) = address(&part.body);
        assert_eq!(*src, format!("docs/scalar-part.{hex}.js"));
        assert_eq!(*integrity, sri);
        assert_immutable(&part, src);
        script.extend(part.body);
    }

    // The joined parts are the pinned script, and the CSP runs exactly that.
    let (hex, sri) = address(&script);
    assert_eq!(
        Some(sri.as_str()),
        order_service::routes::docs::scalar_pin("script_integrity")
    );
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains(&format!("script-src 'self' '{sri}';")),
        "{csp}"
    );

    // Pages of earlier releases still find the whole script at their paths.
    let whole = get(&app, &format!("/docs/scalar.{hex}.js")).await;
    assert_immutable(&whole, "the whole script");
    assert!(
        whole.body == script,
        "the whole script differs from its parts"
    );
    assert!(get(&app, "/docs/scalar.js").await.body == script);
}

/// Each part is sent as stored, brotli-compressed, to a client that accepts it, with
/// `Content-Encoding` (so no layer compresses it again) and `Vary`; decoded to any other.
#[tokio::test]
async fn script_parts_come_compressed_to_clients_that_accept_brotli() {
    let app = local_app().await;
    let html = String::from_utf8(get(&app, "/docs").await.body).expect("utf-8");
    let parts: Vec<(String, String)> =
        serde_json::from_str(&loader_attribute(&html, "data-parts")).expect("parts as JSON");
    let (src, integrity) = &parts[0];
    let fetch = |accept: Option<&'static str>| {
        let headers: Vec<(&str, &str)> =
            accept.map(|a| ("accept-encoding", a)).into_iter().collect();
        send(
            &app,
            request(Method::GET, &format!("/{src}"), &headers, None),
        )
    };

    let identity = fetch(None).await;
    let br = fetch(Some("gzip, deflate, br, zstd")).await;
    // Decoded, and then compressed by the router's compression layer as it does any answer.
    let gzip_only = fetch(Some("gzip, deflate")).await;
    for (reply, encoding) in [
        (&identity, None),
        (&br, Some("br")),
        (&gzip_only, Some("gzip")),
    ] {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-encoding"), encoding);
        assert_eq!(reply.header("vary"), Some("accept-encoding"));
        assert_eq!(
            reply.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
    }
    let mut decoded = Vec::new();
    brotli::Decompressor::new(&br.body[..], 4096)
        .read_to_end(&mut decoded)
        .expect("brotli");
    assert!(decoded == identity.body);
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&gzip_only.body[..])
        .read_to_end(&mut decoded)
        .expect("gzip");
    assert!(decoded == identity.body);
    assert_eq!(address(&identity.body).1, *integrity);
    assert!(br.body.len() * 3 < identity.body.len(), "{}", br.body.len());
}
