//! Content codings: answers compressed as the client accepts, request bodies decoded or
//! refused.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll, Waker};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request, Response};
use bytes::Bytes;
use tower::util::future::{EitherResponseFuture, MapResponseFuture};
use tower::util::{Either, MapResponse};
use tower::{BoxError, Layer, Service};
use tower_http::body::UnsyncBoxBody;
use tower_http::compression::predicate::SizeAbove;
use tower_http::compression::{CompressionLayer, Predicate};
use tower_http::decompression::{
    DecompressionBody, RequestDecompression, RequestDecompressionFuture, RequestDecompressionLayer,
};
use tower_http::limit::{RequestBodyLimit, ResponseBody, ResponseFuture as LimitFuture};

use crate::error::{internal_error, ErrorCause};

/// gzip or br, as the client's `Accept-Encoding` prefers (q-values honoured), for answers of
/// at least `min_bytes`; smaller ones, and answers that already carry a `Content-Encoding`
/// (a file stored compressed), are sent as they are.
pub fn compression(min_bytes: u16) -> CompressionLayer<SizeAbove> {
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .compress_when(SizeAbove::new(min_bytes))
}

/// Request bodies: in gzip they are decoded, before the body limit counts them, so the
/// limit bounds what a small compressed body may inflate to; any other `Content-Encoding` is
/// refused with 415 and `Accept-Encoding: gzip` (RFC 9110, section 15.5.16); a body above
/// `limit_bytes` is refused with 413.
pub fn request_bodies(limit_bytes: usize) -> RequestBodiesLayer {
    RequestBodiesLayer {
        // The crate counts br as supported once its compression is built in; only gzip is
        // decoded.
        decoding: RequestDecompressionLayer::new().gzip(true).no_br(),
        limit_bytes,
    }
}

/// tower-http's [`RequestDecompression`] and [`RequestBodyLimit`], each put around the
/// service below only for a request that needs it: decoding for a request that declares a
/// `Content-Encoding`, the limit for one that has a body. The others (nearly all, and every
/// GET) pass straight on. Each wraps the request's body and the answer's, which then has to
/// be boxed again, whatever the request: that is most of what they cost, and a request
/// without a body has nothing for either to do.
#[derive(Clone)]
pub struct RequestBodiesLayer {
    decoding: RequestDecompressionLayer,
    limit_bytes: usize,
}

impl<S> Layer<S> for RequestBodiesLayer {
    type Service = RequestBodies<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestBodies {
            inner,
            decoding: self.decoding.clone(),
            limit_bytes: self.limit_bytes,
        }
    }
}

/// See [`RequestBodiesLayer`].
#[derive(Clone)]
pub struct RequestBodies<S> {
    inner: S,
    decoding: RequestDecompressionLayer,
    limit_bytes: usize,
}

fn answer<B>(response: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(Body::new)
}

/// A body limited while it is read.
type LimitedBody<B> = tower_http::body::Limited<B>;
/// The answer of a limited request.
type LimitedAnswer = Response<ResponseBody<Body>>;
/// The answer of a decoded request.
type DecodedAnswer = Response<UnsyncBoxBody<Bytes, BoxError>>;

/// The future of the service below for a request with a body of type `B`.
type Below<S, B> = <S as Service<Request<B>>>::Future;

impl<S, E> Service<Request<Body>> for RequestBodies<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = E>
        + Service<Request<LimitedBody<Body>>, Response = Response<Body>, Error = E>
        + Service<Request<LimitedBody<DecompressionBody<Body>>>, Response = Response<Body>, Error = E>,
{
    type Response = Response<Body>;
    type Error = E;
    type Future = EitherResponseFuture<
        Below<S, Body>,
        EitherResponseFuture<
            MapResponseFuture<
                LimitFuture<Below<S, LimitedBody<Body>>>,
                fn(LimitedAnswer) -> Response<Body>,
            >,
            MapResponseFuture<
                RequestDecompressionFuture<
                    LimitFuture<Below<S, LimitedBody<DecompressionBody<Body>>>>,
                    ResponseBody<Body>,
                    E,
                >,
                fn(DecodedAnswer) -> Response<Body>,
            >,
        >,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        Service::<Request<Body>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // Around the service below for this request only, borrowing it: nothing is cloned.
        type Limiting<'a, S> =
            MapResponse<RequestBodyLimit<&'a mut S>, fn(LimitedAnswer) -> Response<Body>>;
        type Decoding<'a, S> = MapResponse<
            RequestDecompression<RequestBodyLimit<&'a mut S>>,
            fn(DecodedAnswer) -> Response<Body>,
        >;
        let limited = RequestBodyLimit::new(&mut self.inner, self.limit_bytes);
        let mut branch: Either<&mut S, Either<Limiting<'_, S>, Decoding<'_, S>>> =
            if request.headers().contains_key(header::CONTENT_ENCODING) {
                let decoding = self.decoding.layer(limited);
                Either::Right(Either::Right(MapResponse::new(decoding, answer)))
            } else if http_body::Body::is_end_stream(request.body()) {
                Either::Left(limited.into_inner())
            } else {
                Either::Right(Either::Left(MapResponse::new(limited, answer)))
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

/// Answers compressed as negotiated ([`compression`]) and varying on `Accept-Encoding`
/// ([`vary_on_accept_encoding`]). The service below answers with an axum body.
pub fn negotiation(min_bytes: u16) -> NegotiationLayer {
    NegotiationLayer {
        compression: compression(min_bytes),
        threshold: SizeAbove::new(min_bytes),
    }
}

/// See [`negotiation`]. The answer is made first and compressed only if it must be: one
/// under the size threshold, already encoded, or a range goes out as it is, without
/// tower-http's compression layer. That layer parses `Accept-Encoding` and wraps and boxes
/// the body of every answer, those it leaves uncompressed too: for a single order sent to a
/// client that accepts gzip (every browser, most HTTP libraries) that was a quarter of the
/// request's instructions. An answer that is to be compressed is handed to that same layer,
/// with the request's `Accept-Encoding`, so what is sent is exactly what it would send.
#[derive(Clone)]
pub struct NegotiationLayer {
    compression: CompressionLayer<SizeAbove>,
    /// The compression layer's own predicate, which it does not lend out.
    threshold: SizeAbove,
}

impl<S> Layer<S> for NegotiationLayer {
    type Service = Negotiated<S>;

    fn layer(&self, inner: S) -> Negotiated<S> {
        Negotiated {
            inner,
            compression: self.compression.clone(),
            threshold: self.threshold,
        }
    }
}

/// See [`NegotiationLayer`].
#[derive(Clone)]
pub struct Negotiated<S> {
    inner: S,
    compression: CompressionLayer<SizeAbove>,
    threshold: SizeAbove,
}

impl<S, B, E> Service<Request<Body>> for Negotiated<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = E>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = E;
    type Future = NegotiatedAnswer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let accepted = accepted_encodings(request.headers());
        NegotiatedAnswer {
            inner: self.inner.call(request),
            compression: accepted.map(|accepted| (self.compression.clone(), accepted)),
            threshold: self.threshold,
        }
    }
}

/// The request's `Accept-Encoding`, its fields joined as one (RFC 9110, section 5.3), if any.
fn accepted_encodings(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut fields = headers.get_all(header::ACCEPT_ENCODING).iter();
    let first = fields.next()?;
    let Some(second) = fields.next() else {
        return Some(first.clone());
    };
    let mut joined = first.as_bytes().to_vec();
    for field in std::iter::once(second).chain(fields) {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(field.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}

pin_project_lite::pin_project! {
    /// The answer, compressed when the client accepts a coding and the answer needs one.
    pub struct NegotiatedAnswer<F> {
        #[pin]
        inner: F,
        compression: Option<(CompressionLayer<SizeAbove>, HeaderValue)>,
        threshold: SizeAbove,
    }
}

impl<F, B, E> Future for NegotiatedAnswer<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = answer(ready!(this.inner.poll(cx))?);
        // Before compressing: tower-http's layer adds no `Vary` of its own when it finds one.
        if let Some(vary) = vary_on_accept_encoding(&response) {
            response.headers_mut().append(header::VARY, vary);
        }
        let Some((layer, accepted)) = this.compression.take() else {
            return Poll::Ready(Ok(response));
        };
        // The layer's own test, less its parsing and wrapping: not encoded already, not a
        // range, and at least the threshold in size.
        let headers = response.headers();
        if headers.contains_key(header::CONTENT_ENCODING)
            || headers.contains_key(header::CONTENT_RANGE)
            || !this.threshold.should_compress(&response)
        {
            return Poll::Ready(Ok(response));
        }
        Poll::Ready(Ok(compressed(&layer, accepted, response)))
    }
}

/// `response` as tower-http's compression layer answers a request that accepts `accepted`.
fn compressed(
    layer: &CompressionLayer<SizeAbove>,
    accepted: HeaderValue,
    response: Response<Body>,
) -> Response<Body> {
    let mut request = Request::new(());
    request
        .headers_mut()
        .insert(header::ACCEPT_ENCODING, accepted);
    let mut made = Some(response);
    let answered = tower::service_fn(move |_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(made.take().unwrap_or_default()))
    });
    let mut compressing = layer.layer(answered);
    // The layer's future only waits for the service inside, whose answer is ready: one poll.
    let mut future = pin!(compressing.call(request));
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(Ok(response)) => answer(response),
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => internal_error(ErrorCause::new("compression did not answer at once")),
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

    /// `Accept-Encoding` sent as two fields counts as one list: the coding named in the
    /// second is used, and an answer under the threshold goes out as it is.
    #[tokio::test]
    async fn accept_encoding_in_two_fields_is_one_list() {
        let router = super::negotiated(
            axum::Router::new()
                .route("/large", get(|| async { "a".repeat(2_000) }))
                .route("/small", get(|| async { "a".repeat(10) })),
            100,
        );
        let ask = |path: &str| {
            Request::get(path)
                .header(header::ACCEPT_ENCODING, "identity;q=0.5")
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .expect("request")
        };
        let large = router
            .clone()
            .oneshot(ask("/large"))
            .await
            .expect("infallible");
        assert_eq!(large.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(large.headers()[header::VARY], "accept-encoding");
        let small = router.oneshot(ask("/small")).await.expect("infallible");
        assert!(!small.headers().contains_key(header::CONTENT_ENCODING));
        assert_eq!(small.headers()[header::VARY], "accept-encoding");
        let body = small.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body.len(), 10);
    }

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
