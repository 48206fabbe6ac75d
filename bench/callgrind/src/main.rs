//! Requests served in-process, for valgrind's callgrind to count the instructions of each.
//!
//!   bench-callgrind get|get-browser|post|refused|axum-get|axum-post|refusal-alone [REQUESTS]
//!
//! `get-browser` is the same GET with the `Accept-Encoding` a browser sends: the order is under
//! the compression threshold, so it must cost about what `get` does. `refused` is a
//! `GET /orders/{id}` while the concurrency limit is taken (the places are held as requests in
//! flight would hold them): the 503 an overloaded pod answers.
//!
//! Builds the state and the router exactly as the container does, with production settings
//! (`ENVIRONMENT=production`: JSON access log at info, metrics on, a bearer key on every request,
//! memory store with the sample data), serves a few warm-up requests, then `REQUESTS`
//! (default 1000) requests of the chosen kind, each one through [`measured`]. `.ci/stages/perf.sh` runs this
//! under `valgrind --tool=callgrind --toggle-collect=*measured*`, so only the work inside
//! `measured` counts: routing, every layer, the handler, the store and the body, not start-up.
//! Instruction counts do not depend on how busy the machine is, which makes them a gate that
//! can run in CI, unlike requests per second.
//!
//! `axum-get` and `axum-post` serve the same requests through a minimal axum router (one
//! route, no layer, no state) that answers with the bytes the service answered: the floor any
//! axum service stands on, measured in the same run so the ratio means something anywhere.
//!
//! `refusal-alone` is the floor under `refused`: the same request answered with the same
//! 503 (the service's own `admission::refusal`) by a bare tower service, with no admission
//! decision, no router and no layer. What `refused` costs above it is the admission decision.
//!
//! Without valgrind it simply serves the requests, so it also checks itself: every answer
//! must have the expected status, or it exits non-zero (a broken request must not look cheap).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::process::ExitCode;
use std::task::{Context, Poll, Waker};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use order_service::{admission, build_state, router, telemetry, Config, Target};
use tokio::runtime::Runtime;

/// Requests served before counting starts: lazy initialisation (metric series, the first
/// allocation of each buffer, tokio's timer wheel) is not per-request cost.
const WARM_UP: usize = 20;
const API_KEY: &str = "perf-key-0123456789abcdef";
const NEW_ORDER: &str = r#"{"customer_name":"Perf","items":[{"product_id":1,"name":"Widget","quantity":2,"price":9.99}],"shipping_address":"1 Perf St"}"#;

#[derive(Clone, Copy)]
enum Kind {
    Get,
    /// A GET that accepts compressed answers.
    BrowserGet,
    Post,
    Refused,
}

impl Kind {
    /// The request as hyper hands it to a service, and the buffer its head was read into.
    /// The URI and the header values are slices of that buffer. Hyper keeps reading the
    /// connection's next requests into it, so dropping a request frees nothing there: the
    /// caller keeps the buffer until the request is answered, as hyper does.
    fn request(self) -> (Request<Body>, Bytes) {
        let (method, path) = match self {
            Kind::Get | Kind::BrowserGet | Kind::Refused => (Method::GET, "/orders/1"),
            Kind::Post => (Method::POST, "/orders"),
        };
        // Reads take a key outside ENVIRONMENT=local, as writes do.
        let authorization = format!("Bearer {API_KEY}");
        let content_type = "application/json";
        let accept_encoding = "gzip, deflate, br, zstd";
        let head =
            Bytes::from([path, "perf", &authorization, content_type, accept_encoding].concat());
        let mut read = 0;
        let mut next = |len: usize| {
            read += len;
            head.slice(read - len..read)
        };
        let uri = next(path.len());
        let user_agent = next(4);
        let authorization = next(authorization.len());
        let content_type = next(content_type.len());
        let accept_encoding = next(accept_encoding.len());
        let value =
            |bytes| HeaderValue::from_maybe_shared(bytes).unwrap_or(HeaderValue::from_static(""));
        let builder = Request::builder()
            .method(method)
            .uri(axum::http::Uri::from_maybe_shared(uri).unwrap_or_default())
            .header(header::USER_AGENT, value(user_agent))
            .header(header::AUTHORIZATION, value(authorization));
        let request = match self {
            Kind::Get | Kind::Refused => builder.body(Body::empty()),
            Kind::BrowserGet => builder
                .header(header::ACCEPT_ENCODING, value(accept_encoding))
                .body(Body::empty()),
            Kind::Post => builder
                .header(header::CONTENT_TYPE, value(content_type))
                .body(Body::from(NEW_ORDER)),
        };
        (request.unwrap_or_default(), head)
    }

    fn expected(self) -> StatusCode {
        match self {
            Kind::Get | Kind::BrowserGet => StatusCode::OK,
            Kind::Post => StatusCode::CREATED,
            Kind::Refused => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (kind, front) = match args.first().map(String::as_str) {
        Some("get") => (Some(Kind::Get), Front::Service),
        Some("get-browser") => (Some(Kind::BrowserGet), Front::Service),
        Some("post") => (Some(Kind::Post), Front::Service),
        Some("refused") => (Some(Kind::Refused), Front::Service),
        Some("axum-get") => (Some(Kind::Get), Front::MinimalAxum),
        Some("axum-post") => (Some(Kind::Post), Front::MinimalAxum),
        Some("refusal-alone") => (Some(Kind::Refused), Front::RefusalAlone),
        _ => (None, Front::Service),
    };
    let requests = match args.get(1) {
        None => Some(1000),
        Some(n) => n.parse::<usize>().ok(),
    };
    let (Some(kind), Some(requests)) = (kind, requests) else {
        eprintln!(
            "usage: bench-callgrind get|get-browser|post|refused|axum-get|axum-post|refusal-alone \
             [REQUESTS]"
        );
        return ExitCode::from(2);
    };
    match run(kind, front, requests) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("callgrind bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What answers the requests.
#[derive(Clone, Copy)]
enum Front {
    /// `order_service::router`, as the container serves it.
    Service,
    /// One axum route answering the service's bytes.
    MinimalAxum,
    /// The refusal's answer, and nothing before it.
    RefusalAlone,
}

fn run(kind: Kind, front: Front, requests: usize) -> Result<(), String> {
    let vars: HashMap<String, String> = [
        ("ENVIRONMENT", "production"),
        ("LOG_LEVEL", "info"),
        ("STORE", "memory"),
        ("SEED_SAMPLE_DATA", "true"),
        ("API_KEYS", API_KEY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::from_vars(&vars).map_err(|e| e.to_string())?;
    // The container's subscriber: lines are formatted here and written by a writer thread,
    // whose writes callgrind does not count (they are off the request's path).
    let _logs = telemetry::init_container(config.log_level, config.log_format);
    // One thread: callgrind's toggle follows the calling thread, and every poll of the
    // request's future then happens inside `measured` on it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let state = runtime
        .block_on(build_state(config, Target::Container))
        .map_err(|e| e.to_string())?;
    let mut held = Vec::new();
    if let Kind::Refused = kind {
        while let Some(permit) = state.admission.try_admit() {
            held.push(permit);
        }
    }
    // Entered once, outside the count: the service's timers find their runtime without it.
    let _entered = runtime.enter();
    let mut app = router(state);
    match front {
        Front::Service => serve_all(kind, requests, &runtime, &mut app),
        Front::MinimalAxum => {
            let (_, body) = serve(&runtime, &mut app, kind.request().0);
            let mut app = minimal_router(kind, body);
            serve_all(kind, requests, &runtime, &mut app)
        }
        Front::RefusalAlone => serve_all(kind, requests, &runtime, &mut tower::service_fn(refuse)),
    }
}

/// Every request refused, as admission refuses one, without deciding anything.
fn refuse(request: Request<Body>) -> Ready<Result<axum::response::Response, Infallible>> {
    ready(Ok(admission::refusal(request.into_parts().0.headers)))
}

fn serve_all<S: Served>(
    kind: Kind,
    requests: usize,
    runtime: &Runtime,
    app: &mut S,
) -> Result<(), String> {
    for _ in 0..WARM_UP {
        check(kind, serve(runtime, app, kind.request().0))?;
    }
    for _ in 0..requests {
        let (request, _read_buffer) = kind.request();
        check(kind, measured(runtime, app, request))?;
    }
    Ok(())
}

/// The service's entry type, the minimal router and the bare refusal: all serve a request
/// the same way.
trait Served:
    tower::Service<Request<Body>, Response = axum::response::Response, Error = Infallible>
{
}

impl<S> Served for S where
    S: tower::Service<Request<Body>, Response = axum::response::Response, Error = Infallible>
{
}

/// One route answering `kind`'s request with the service's status and `body`, as JSON; a
/// POST's body is read, as the service reads it.
fn minimal_router(kind: Kind, body: Bytes) -> Router {
    let answer = move || {
        let body = body.clone();
        (
            kind.expected(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()
    };
    match kind {
        Kind::Get | Kind::BrowserGet | Kind::Refused => {
            Router::new().route("/orders/{id}", get(move || async move { answer() }))
        }
        Kind::Post => Router::new().route(
            "/orders",
            post(move |_request: Bytes| async move { answer() }),
        ),
    }
}

/// The counted part: one request through the whole service, body read to the end.
#[inline(never)]
fn measured<S: Served>(
    runtime: &Runtime,
    app: &mut S,
    request: Request<Body>,
) -> (StatusCode, Bytes) {
    serve(runtime, app, request)
}

/// Called in place, as the server calls a connection's app (`server/in_place.rs`; every app
/// here is always ready), and polled once in place: an answer ready at once (every kind
/// here, with the memory store) costs only the service's own work, whatever the kind. The
/// runtime takes over only if it has to wait, so a kind that starts waiting shows up as the
/// scheduler's cost in its count.
fn serve<S: Served>(runtime: &Runtime, app: &mut S, request: Request<Body>) -> (StatusCode, Bytes) {
    let mut answer = pin!(async {
        match app.call(request).await {
            Ok(response) => (response.status(), read_body(response.into_body()).await),
            Err(never) => match never {},
        }
    });
    match answer
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(answer) => answer,
        Poll::Pending => runtime.block_on(answer),
    }
}

/// The body's bytes, read frame by frame as a server writes them out. (`collect()` would
/// queue the frames in a buffer of its own: an allocation and a copy no server makes, which
/// counted about 600 instructions in every kind.)
async fn read_body(mut body: Body) -> Bytes {
    let mut whole = Bytes::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            whole = match whole.is_empty() {
                true => data,
                false => [whole.as_ref(), data.as_ref()].concat().into(),
            };
        }
    }
    whole
}

fn check(kind: Kind, (status, body): (StatusCode, Bytes)) -> Result<(), String> {
    if status == kind.expected() && !body.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "expected {}, got {status}: {}",
            kind.expected(),
            String::from_utf8_lossy(&body)
        ))
    }
}
