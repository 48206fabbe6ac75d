//! Content codings: answers compressed as the client accepts, request bodies decoded or
//! refused.

use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use bytes::Bytes;
use tower::util::future::{EitherResponseFuture, MapResponseFuture};
use tower::util::{Either, MapResponse};
use tower::{BoxError, Layer, Service};
use tower_http::body::UnsyncBoxBody;
use tower_http::compression::predicate::SizeAbove;
use tower_http::compression::{Compression, CompressionBody, CompressionLayer};
use tower_http::decompression::{
    DecompressionBody, RequestDecompression, RequestDecompressionLayer,
};
use tower_http::set_header::{SetResponseHeader, SetResponseHeaderLayer};

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
pub fn request_decoding() -> RequestDecodingLayer {
    // The crate counts br as supported once its compression is built in; only gzip is decoded.
    RequestDecodingLayer(RequestDecompressionLayer::new().gzip(true).no_br())
}

/// [`RequestDecompressionLayer`] for the requests that declare a `Content-Encoding`; the
/// others (nearly all, and every GET) pass straight on. The decompression service wraps
/// the request body and boxes the answer's, whatever the request: that is most of what it
/// costs, and a request without a coding has nothing for it to do. It is put around the
/// service below only for a request that needs it, so the stack (cloned for every request)
/// holds that service once.
#[derive(Clone)]
pub struct RequestDecodingLayer(RequestDecompressionLayer);

impl<S> Layer<S> for RequestDecodingLayer {
    type Service = RequestDecoding<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestDecoding {
            inner,
            decoding: self.0.clone(),
        }
    }
}

/// See [`RequestDecodingLayer`].
#[derive(Clone)]
pub struct RequestDecoding<S> {
    inner: S,
    decoding: RequestDecompressionLayer,
}

type Decoded = Response<UnsyncBoxBody<Bytes, BoxError>>;

fn answer<B>(response: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(Body::new)
}

/// The service that was made ready, for a wrapper built around it for one request; a clone
/// takes its place (tower's way of handing a ready service on).
fn take_ready<S: Clone>(service: &mut S) -> S {
    let clone = service.clone();
    std::mem::replace(service, clone)
}

impl<S, A, B, E> Service<Request<Body>> for RequestDecoding<S>
where
    S: Service<Request<Body>, Response = Response<A>, Error = E>
        + Service<Request<DecompressionBody<Body>>, Response = Response<B>, Error = E>
        + Clone,
    A: http_body::Body<Data = Bytes> + Send + 'static,
    A::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = E;
    type Future = EitherResponseFuture<
        MapResponseFuture<<S as Service<Request<Body>>>::Future, fn(Response<A>) -> Response<Body>>,
        MapResponseFuture<
            <RequestDecompression<S> as Service<Request<Body>>>::Future,
            fn(Decoded) -> Response<Body>,
        >,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        Service::<Request<Body>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        type Plain<'a, S, A> = MapResponse<&'a mut S, fn(Response<A>) -> Response<Body>>;
        type Decoding<S> = MapResponse<RequestDecompression<S>, fn(Decoded) -> Response<Body>>;
        let mut branch: Either<Plain<'_, S, A>, Decoding<S>> =
            if request.headers().contains_key(header::CONTENT_ENCODING) {
                let decoding = self.decoding.layer(take_ready(&mut self.inner));
                Either::Right(MapResponse::new(decoding, answer))
            } else {
                Either::Left(MapResponse::new(&mut self.inner, answer))
            };
        branch.call(request)
    }
}

/// `Vary: Accept-Encoding` on every answer the compression layer could have compressed, also
/// those too small to be: a cache must not hand a compressed copy to a client that cannot
/// read it, nor keep one copy for every client. Answers stored compressed are left alone.
fn vary_on_accept_encoding(response: &Response<Body>) -> Option<HeaderValue> {
    let headers = response.headers();
    let varies =
        headers.get_all(header::VARY).iter().any(|value| {
            value.to_str().unwrap_or_default().split(',').any(|name| {
                name.trim().eq_ignore_ascii_case("accept-encoding") || name.trim() == "*"
            })
        });
    (!varies && !headers.contains_key(header::CONTENT_ENCODING))
        .then(|| HeaderValue::from_static("accept-encoding"))
}

type Vary = fn(&Response<Body>) -> Option<HeaderValue>;

/// Answers compressed as negotiated ([`compression`]) and varying on `Accept-Encoding`
/// ([`vary_on_accept_encoding`]). The service below answers with an axum body.
pub fn negotiation(min_bytes: u16) -> NegotiationLayer {
    NegotiationLayer {
        compression: compression(min_bytes),
    }
}

/// See [`negotiation`]. A request without `Accept-Encoding` passes no compression layer: that
/// layer would pick no coding for it (identity) and wrap, box and pass on the answer
/// unchanged, at a tenth of a small answer's cost. The one difference, a `Vary: *` it would
/// extend with `accept-encoding` (which `*` already covers), no route answers.
#[derive(Clone)]
pub struct NegotiationLayer {
    compression: CompressionLayer<SizeAbove>,
}

impl<S> Layer<S> for NegotiationLayer {
    type Service = Negotiated<S>;

    fn layer(&self, inner: S) -> Negotiated<S> {
        // The header is set inside the compression layer, which adds none of its own when it
        // finds one; set as a plain header layer, no answer is boxed for it.
        let vary: Vary = vary_on_accept_encoding;
        Negotiated {
            inner: SetResponseHeaderLayer::appending(header::VARY, vary).layer(inner),
            compression: self.compression.clone(),
        }
    }
}

/// See [`NegotiationLayer`].
#[derive(Clone)]
pub struct Negotiated<S> {
    inner: SetResponseHeader<S, Vary>,
    compression: CompressionLayer<SizeAbove>,
}

type Varied<S> = SetResponseHeader<S, Vary>;

impl<S, E> Service<Request<Body>> for Negotiated<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = E> + Clone,
{
    type Response = Response<Body>;
    type Error = E;
    type Future = EitherResponseFuture<
        <Varied<S> as Service<Request<Body>>>::Future,
        MapResponseFuture<
            <Compression<Varied<S>, SizeAbove> as Service<Request<Body>>>::Future,
            fn(Response<CompressionBody<Body>>) -> Response<Body>,
        >,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        type Compressing<S> = MapResponse<
            Compression<Varied<S>, SizeAbove>,
            fn(Response<CompressionBody<Body>>) -> Response<Body>,
        >;
        let mut branch: Either<&mut Varied<S>, Compressing<S>> =
            if request.headers().contains_key(header::ACCEPT_ENCODING) {
                let compression = self.compression.layer(take_ready(&mut self.inner));
                Either::Right(MapResponse::new(compression, answer))
            } else {
                Either::Left(&mut self.inner)
            };
        branch.call(request)
    }
}

/// `router` with [`negotiation`].
pub fn negotiated<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    min_bytes: u16,
) -> axum::Router<S> {
    router.layer(negotiation(min_bytes))
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
