//! Content codings: answers compressed as the client accepts, request bodies decoded or
//! refused.

use axum::http::{header, HeaderValue, Response};
use tower_http::compression::predicate::SizeAbove;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;

/// gzip or br, as the client's `Accept-Encoding` prefers (q-values honoured), for answers of
/// at least `min_bytes`; smaller ones, and answers that already carry a `Content-Encoding`
/// (a file stored compressed), are sent as they are.
pub fn compression(min_bytes: u16) -> CompressionLayer<SizeAbove> {
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .compress_when(SizeAbove::new(min_bytes))
}

/// Request bodies in gzip are decoded, before the body limit counts them, so the limit
/// bounds what a small compressed body may inflate to. Any other `Content-Encoding` is
/// refused with 415 and `Accept-Encoding: gzip` (RFC 9110, section 15.5.16).
pub fn request_decoding() -> RequestDecompressionLayer {
    // The crate counts br as supported once its compression is built in; only gzip is decoded.
    RequestDecompressionLayer::new().gzip(true).no_br()
}

/// `Vary: Accept-Encoding` on every answer the compression layer could have compressed, also
/// those too small to be: a cache must not hand a compressed copy to a client that cannot
/// read it, nor keep one copy for every client. Answers stored compressed are left alone.
pub async fn vary_on_accept_encoding<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    let varies =
        headers.get_all(header::VARY).iter().any(|value| {
            value.to_str().unwrap_or_default().split(',').any(|name| {
                name.trim().eq_ignore_ascii_case("accept-encoding") || name.trim() == "*"
            })
        });
    if !varies && !headers.contains_key(header::CONTENT_ENCODING) {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// `router` with its answers compressed as negotiated ([`compression`]) and varying on
/// `Accept-Encoding` ([`vary_on_accept_encoding`]).
pub fn negotiated<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    min_bytes: u16,
) -> axum::Router<S> {
    router
        .layer(compression(min_bytes))
        .layer(axum::middleware::map_response(vary_on_accept_encoding))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request};
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// A file stored compressed (the docs script) goes out exactly as stored, whatever the
    /// client accepts.
    #[tokio::test]
    async fn an_answer_already_encoded_is_not_compressed_again() {
        let stored = vec![7_u8; 100_000];
        let body = stored.clone();
        let router = super::negotiated(
            axum::Router::new().route(
                "/file",
                get(move || async move { ([(header::CONTENT_ENCODING, "br")], body) }),
            ),
            0,
        );
        let request = Request::get("/file")
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .expect("request");
        let response = router.oneshot(request).await.expect("infallible");
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "br");
        let sent = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(sent.as_ref(), stored.as_slice());
    }
}
