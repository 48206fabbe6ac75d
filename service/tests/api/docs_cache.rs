//! The docs page loads its script from a path named by the script's content, cached for good:
//! after an upgrade the page names a new path, so no browser meets a stale copy.

use sha2::{Digest, Sha384};

use crate::support::{get, local_app};

#[tokio::test]
async fn the_docs_script_lives_at_a_content_addressed_immutable_path() {
    let app = local_app().await;
    let page = get(&app, "/docs").await;
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let html = String::from_utf8(page.body.clone()).expect("utf-8");
    let src = html
        .split("<script src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a script element with src");
    let script = get(&app, &format!("/{src}")).await;
    assert_eq!(script.status, 200, "{src}");
    let digest = Sha384::digest(&script.body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(src, format!("docs/scalar.{hex}.js"));
    let cache = script.header("cache-control").expect("cache-control");
    assert!(
        cache.contains("immutable") && cache.contains("max-age=31536000"),
        "{cache}"
    );
    // Pages of the previous release still find the script at its old path.
    assert_eq!(get(&app, "/docs/scalar.js").await.body, script.body);
}
