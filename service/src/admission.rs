//! Admission control of the API routes: a request is served when fewer than the current
//! concurrency limit are in flight, and otherwise refused at once with a 503.
//!
//! [`App`] decides it on the path before any router or layer, so a refusal costs no routing,
//! no access log line, no span and no metric-label lookup: a load of the in-flight count, two
//! atomic counters and a response of static bytes and pre-built header values. Refusals are summarised in one WARN
//! line a second with their count; an overload never becomes a flood of log lines. The probes
//! (`/health`, `/ready`) and the metrics port are outside it and always answered.
//!
//! The limit itself comes from [`limit::Controller`] (adaptive, the default) or is the fixed
//! ceiling `MAX_IN_FLIGHT_REQUESTS` (`ADAPTIVE_CONCURRENCY=false`).
//!
//! The limit sees only the requests it admitted. Under overload a request also waits before
//! that, unread in its socket while the CPU serves others, and that wait can be most of its
//! latency. So while the pod is refusing (a refusal in the last one to two seconds, longer
//! if the pod was starved of CPU meanwhile), each
//! container connection records when its request's bytes reached the host (the kernel's
//! receive timestamp, [`Arrival`]), and a request that waited longer than
//! `QUEUE_WAIT_TIMEOUT_MS` before it was read is refused like one over the limit: answering it
//! would only make the requests behind it late too. Refusing the stale ones is cheap, so the
//! standing queue drains to the target and the requests admitted are fresh (CoDel's target
//! for a queue that has stood, and the controlled-delay queue of "Fail at Scale", ACM Queue
//! 2015). A pod that has not been refusing reads without timestamps: a burst or a briefly
//! starved CPU is served a little late rather than refused, and the reads cost nothing more.

pub mod limit;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::time::Instant;

use crate::error::PROBLEM_JSON;
use crate::layers::Api;
use crate::metrics::MetricsError;
use limit::{Controller, LimitSettings};

/// The whole answer to a refused request: fixed, so nothing is formatted or allocated for it.
const REFUSAL_BODY: &[u8] = br#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"the service is at capacity; retry later"}"#;

/// Seconds a refused client is asked to wait: long enough to let the burst pass, short enough
/// that a retry lands on a recovered pod.
const RETRY_AFTER_SECONDS: &str = "1";

/// How often refusals are summarised in the log (when there were any), and how long a pod
/// that stopped refusing keeps reading arrival times: until a summary finds a whole interval
/// without a refusal.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// How late a summary may run before the pod counts as starved rather than quiet: a tokio
/// timer on a pod with CPU to spare fires within a millisecond or two.
const STARVED: Duration = Duration::from_millis(100);

pub struct Admission {
    in_flight: AtomicUsize,
    limit: AtomicUsize,
    /// `None`: the limit is fixed at the ceiling.
    controller: Option<Mutex<Controller>>,
    /// `QUEUE_WAIT_TIMEOUT_MS`: a request that waited longer than this before it was read
    /// (known only while refusing) is refused.
    max_queue_wait: Duration,
    /// Set by every refusal, cleared by a summary interval without one: while set, the
    /// connections read their requests' arrival times.
    refusing: Arc<AtomicBool>,
    /// Refusals since the last summary line, and how many of them for waiting too long.
    unreported: AtomicU64,
    unreported_late: AtomicU64,
    refused: IntCounter,
    limit_gauge: IntGauge,
}

impl Admission {
    /// At most `max_in_flight` requests at once; below that, the adaptive limit when
    /// `adaptive`; none that waited longer than `max_queue_wait` before it was read.
    /// Registers `http_requests_refused_total` and `http_concurrency_limit`, and starts the
    /// once-a-second summary when a tokio runtime is running.
    pub fn new(
        max_in_flight: usize,
        adaptive: bool,
        max_queue_wait: Duration,
        registry: &Registry,
    ) -> Result<Arc<Self>, MetricsError> {
        let settings = LimitSettings::new(max_in_flight);
        let controller = adaptive.then(|| {
            let seed = crate::telemetry::ids::next();
            Controller::new(settings, Instant::now(), seed)
        });
        Self::with_controller(max_in_flight, controller, max_queue_wait, registry)
    }

    fn with_controller(
        max_in_flight: usize,
        controller: Option<Controller>,
        max_queue_wait: Duration,
        registry: &Registry,
    ) -> Result<Arc<Self>, MetricsError> {
        let refused = IntCounter::new(
            "http_requests_refused_total",
            "API requests refused with 503: the concurrency limit was reached, or the request \
             waited longer than QUEUE_WAIT_TIMEOUT_MS before it was read",
        )?;
        let limit_gauge = IntGauge::new(
            "http_concurrency_limit",
            "API requests admitted at once now (adaptive, at most MAX_IN_FLIGHT_REQUESTS)",
        )?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(limit_gauge.clone()))?;
        let limit = controller.as_ref().map_or(max_in_flight, Controller::limit);
        limit_gauge.set(limit as i64);
        let admission = Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            controller: controller.map(Mutex::new),
            max_queue_wait,
            refusing: Arc::new(AtomicBool::new(false)),
            unreported: AtomicU64::new(0),
            unreported_late: AtomicU64::new(0),
            refused,
            limit_gauge,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(summarise(Arc::downgrade(&admission)));
        }
        Ok(admission)
    }

    /// The limit enforced now.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// A place among the requests in flight, or `None` (counted as a refusal) at the limit.
    /// The place is given back, and the request's latency reported, when the permit drops.
    pub fn try_admit(self: &Arc<Self>) -> Option<Permit> {
        let limit = self.limit.load(Ordering::Relaxed);
        // A load first: at the limit (the common case under overload) no write to the
        // contended counter.
        if self.in_flight.load(Ordering::Relaxed) < limit {
            let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
            if before < limit {
                return Some(Permit {
                    admission: Arc::clone(self),
                    admitted_at: Instant::now(),
                    in_flight: before + 1,
                });
            }
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        self.refuse();
        None
    }

    /// [`Self::try_admit`] for a request that waited `waited` before it was read: refused
    /// (and counted) when that is longer than `QUEUE_WAIT_TIMEOUT_MS`.
    pub fn try_admit_after(self: &Arc<Self>, waited: Duration) -> Option<Permit> {
        if waited > self.max_queue_wait {
            self.unreported_late.fetch_add(1, Ordering::Relaxed);
            self.refuse();
            return None;
        }
        self.try_admit()
    }

    fn refuse(&self) {
        self.refused.inc();
        self.unreported.fetch_add(1, Ordering::Relaxed);
        // A load first: under overload the flag is already set, and a store would contend.
        if !self.refusing.load(Ordering::Relaxed) {
            self.refusing.store(true, Ordering::Relaxed);
        }
    }

    fn finished(&self, admitted_at: Instant, in_flight: usize) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        let Some(controller) = &self.controller else {
            return;
        };
        let limit = controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .on_finished(admitted_at, in_flight, Instant::now());
        // A load first: the limit seldom changes, and a write on every request would move
        // its cache line between the cores.
        if self.limit.load(Ordering::Relaxed) != limit {
            self.limit.store(limit, Ordering::Relaxed);
            self.limit_gauge.set(limit as i64);
        }
    }
}

/// One admitted request; dropping it (answered, failed or abandoned) frees its place.
pub struct Permit {
    admission: Arc<Admission>,
    admitted_at: Instant,
    in_flight: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.finished(self.admitted_at, self.in_flight);
    }
}

/// When the bytes of the request a connection is reading reached this host, as the kernel
/// stamped them on arrival: while the pod is refusing, the connection's socket records it with
/// every read, and admission reads it to learn how long the request waited unread. Zero: not
/// known (no timestamp came, or none was asked for).
#[derive(Debug, Default)]
pub struct Arrival {
    nanos_since_epoch: AtomicU64,
    /// The admission's "refusing" flag; never set for a port without admission.
    refusing: Arc<AtomicBool>,
}

impl Arrival {
    /// A record whose times are wanted while `refusing` is set, as admission's are.
    #[cfg(test)]
    pub fn following(refusing: Arc<AtomicBool>) -> Self {
        Self {
            refusing,
            ..Self::default()
        }
    }

    /// Whether to read arrival times now (a timestamped read costs a little more).
    pub fn wanted(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    /// The bytes just read arrived `at`; `None` when they came without a timestamp, so an
    /// earlier request's time is never taken for this one's.
    pub fn record(&self, at: Option<SystemTime>) {
        self.nanos_since_epoch
            .store(at.map_or(0, epoch_nanos), Ordering::Relaxed);
    }

    /// How long the request has waited since its bytes arrived; `None` when not known. A
    /// clock stepped back since gives zero.
    /// The clock (`now`) is read only when the arrival is known: mostly it is not.
    pub fn waited(&self, now: impl FnOnce() -> SystemTime) -> Option<Duration> {
        match self.nanos_since_epoch.load(Ordering::Relaxed) {
            0 => None,
            nanos => {
                let arrived = SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos);
                Some(now().duration_since(arrived).unwrap_or_default())
            }
        }
    }
}

/// Nanoseconds since the Unix epoch (0 before it), to keep a time in an atomic.
fn epoch_nanos(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// One WARN line a second while requests are refused, with how many: enough to see an
/// overload and its size, never a line per request.
async fn summarise(admission: Weak<Admission>) {
    let mut tick = tokio::time::interval(SUMMARY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = tick.tick().await;
        let Some(admission) = admission.upgrade() else {
            return;
        };
        let refused = admission.unreported.swap(0, Ordering::Relaxed);
        let waited_too_long = admission.unreported_late.swap(0, Ordering::Relaxed);
        // A quiet interval ends the refusing state, unless the summary itself ran late: then
        // the process was starved of CPU (or stopped), could not refuse anything meanwhile,
        // and the requests that arrived in that time are still waiting unread.
        if refused == 0 && due.elapsed() < STARVED {
            admission.refusing.store(false, Ordering::Relaxed);
        }
        if refused > 0 {
            tracing::warn!(
                refused,
                waited_too_long,
                limit = admission.limit(),
                "requests refused in the last second (at the concurrency limit, or unread for \
                 too long)"
            );
        }
    }
}

/// The refusal's header values, built at compile time: nothing is validated or copied for it.
const PROBLEM_JSON_VALUE: HeaderValue = HeaderValue::from_static(PROBLEM_JSON);
const RETRY_AFTER_VALUE: HeaderValue = HeaderValue::from_static(RETRY_AFTER_SECONDS);

/// The 503 a refused request gets: `Retry-After`, a problem body, nothing computed. Its
/// headers go in the request's header map, emptied: the request is dropped here anyway, and
/// its map's memory then serves the answer instead of being freed and another allocated.
/// Public for the instruction bench, which counts it alone as the floor of a refusal.
pub fn refusal(mut headers: HeaderMap) -> Response {
    headers.clear();
    headers.insert(header::CONTENT_TYPE, PROBLEM_JSON_VALUE);
    headers.insert(header::RETRY_AFTER, RETRY_AFTER_VALUE);
    let mut response = Response::new(Body::from(Bytes::from_static(REFUSAL_BODY)));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    *response.headers_mut() = headers;
    response
}

/// What `router` (and `metrics_router`) return, and both shells serve: the router, and in
/// front of it admission control, decided on the path alone. A refused request meets no
/// router, no layer and no extension: the cheaper a refusal, the more of an overloaded CPU is
/// left for the requests admitted. The exempt paths (the probes) have a router of their own,
/// so an API request passes one router, not a second one behind a fallback.
#[derive(Clone)]
pub struct App<S = Api> {
    router: S,
    /// `None`: nothing is refused (the metrics port, which sheds scrapes itself).
    admission: Option<Arc<Admission>>,
    /// Paths never refused (the probes), and the router that answers them.
    exempt: Option<(&'static [&'static str], S)>,
    /// When this connection's request arrived (the container's connections; Lambda has none).
    arrival: Option<Arc<Arrival>>,
}

impl<S: Clone> App<S> {
    /// Requests to the `exempt` paths go to `exempt_router`, unrefused; every other request
    /// is admitted or refused before `router`.
    pub fn admitting(
        router: S,
        admission: Arc<Admission>,
        exempt: &'static [&'static str],
        exempt_router: S,
    ) -> Self {
        Self {
            router,
            admission: Some(admission),
            exempt: Some((exempt, exempt_router)),
            arrival: None,
        }
    }

    /// `router` with nothing refused.
    pub fn unlimited(router: S) -> Self {
        Self {
            router,
            admission: None,
            exempt: None,
            arrival: None,
        }
    }

    /// This app for one connection, and where the connection records its requests' arrival
    /// (while the pod is refusing): a request that waited too long unread is refused.
    pub fn on_connection(&self) -> (Self, Arc<Arrival>) {
        let arrival = Arc::new(Arrival {
            refusing: match &self.admission {
                Some(admission) => Arc::clone(&admission.refusing),
                None => Arc::default(),
            },
            ..Arrival::default()
        });
        let app = Self {
            arrival: Some(Arc::clone(&arrival)),
            ..self.clone()
        };
        (app, arrival)
    }
}

impl<S> App<S> {
    /// How long the request being called waited unread, when known.
    fn waited(&self) -> Option<Duration> {
        self.arrival.as_ref()?.waited(SystemTime::now)
    }
}

impl<S, B> tower::Service<http::Request<B>> for App<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Admitted<S::Future>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A `Router`, and every layer around one here, is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some((paths, exempt_router)) = &mut self.exempt {
            if paths.contains(&request.uri().path()) {
                return Admitted::Served {
                    answer: exempt_router.call(request.map(Body::new)),
                    permit: None,
                };
            }
        }
        let permit = match &self.admission {
            Some(admission) => {
                let admitted = match self.waited() {
                    Some(waited) => admission.try_admit_after(waited),
                    None => admission.try_admit(),
                };
                match admitted {
                    Some(permit) => Some(permit),
                    None => {
                        return Admitted::Refused {
                            headers: Some(request.into_parts().0.headers),
                        }
                    }
                }
            }
            None => None,
        };
        // The body boxed only now: a refusal does not read it.
        Admitted::Served {
            answer: self.router.call(request.map(Body::new)),
            permit,
        }
    }
}

pin_project_lite::pin_project! {
    /// The router's answer, holding its permit (if any) until it is ready; or the refusal.
    #[project = AdmittedProjection]
    pub enum Admitted<F> {
        Served {
            #[pin]
            answer: F,
            permit: Option<Permit>,
        },
        /// The request's headers, to be replaced by the answer's.
        Refused { headers: Option<HeaderMap> },
    }
}

impl<F> Future for Admitted<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmittedProjection::Served { answer, permit } => {
                let output = std::task::ready!(answer.poll(cx));
                // The latency ends with the answer's head; the body is the client's pace.
                drop(permit.take());
                Poll::Ready(output)
            }
            AdmittedProjection::Refused { headers } => {
                Poll::Ready(Ok(refusal(headers.take().unwrap_or_default())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;

    use super::*;

    #[tokio::test]
    async fn at_the_limit_requests_are_refused_and_counted_until_a_place_frees() {
        let registry = Registry::new();
        let admission =
            Admission::new(2, false, Duration::from_secs(1), &registry).expect("registered");
        assert_eq!(admission.limit(), 2);
        let first = admission.try_admit().expect("first");
        let _second = admission.try_admit().expect("second");
        assert!(admission.try_admit().is_none());
        assert!(admission.try_admit().is_none());
        assert_eq!(admission.refused.get(), 2);
        drop(first);
        assert!(admission.try_admit().is_some());
    }

    #[tokio::test]
    async fn the_adaptive_limit_starts_at_the_ceiling_and_is_a_gauge() {
        let registry = Registry::new();
        let admission =
            Admission::new(32, true, Duration::from_secs(1), &registry).expect("registered");
        assert_eq!(admission.limit(), 32);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("text");
        assert!(text.contains("http_concurrency_limit 32"), "{text}");
        assert!(text.contains("http_requests_refused_total 0"), "{text}");
    }

    /// A pod admitting one request at a time and a connection of it; once the summary's first
    /// interval has started (its first tick is at once), the one place is taken and the next
    /// request refused. Returns the connection's arrival record and the place's permit.
    async fn a_pod_that_just_refused() -> (Arc<Arrival>, Option<Permit>) {
        let registry = Registry::new();
        let admission =
            Admission::new(1, false, Duration::from_millis(10), &registry).expect("registered");
        let (_app, arrival) = App::admitting(
            Router::<()>::new(),
            Arc::clone(&admission),
            &[],
            Router::new(),
        )
        .on_connection();
        assert!(
            !arrival.wanted(),
            "a pod that refused nothing reads plainly"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
        let held = admission.try_admit();
        assert!(admission.try_admit().is_none());
        (arrival, held)
    }

    #[tokio::test(start_paused = true)]
    async fn arrival_times_are_wanted_from_a_refusal_until_a_second_without_one() {
        let (arrival, held) = a_pod_that_just_refused().await;
        assert!(arrival.wanted());
        // The summary that counts the refusal keeps the flag; the next, finding none, clears it.
        tokio::time::sleep(SUMMARY_INTERVAL / 2 * 3).await;
        assert!(arrival.wanted());
        tokio::time::sleep(SUMMARY_INTERVAL).await;
        assert!(!arrival.wanted());
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_starved_past_its_summary_keeps_reading_arrival_times() {
        let (arrival, held) = a_pod_that_just_refused().await;
        // The summary that counts the refusal runs on time (at 1 s).
        tokio::time::sleep(SUMMARY_INTERVAL).await;
        assert!(arrival.wanted());
        // Then the process gets no CPU until 2.5 s: the summary due at 2 s runs half a second
        // late and finds no refusal, which a stalled process could not have made anyway.
        tokio::time::advance(SUMMARY_INTERVAL * 3 / 2).await;
        tokio::task::yield_now().await;
        assert!(arrival.wanted(), "a late summary ended the refusing state");
        // The next one, on time and still finding none, ends it.
        tokio::time::sleep(SUMMARY_INTERVAL + Duration::from_millis(1)).await;
        assert!(!arrival.wanted());
        drop(held);
    }

    #[tokio::test]
    async fn a_request_that_waited_longer_than_the_target_is_refused_and_counted() {
        let registry = Registry::new();
        let admission =
            Admission::new(8, false, Duration::from_millis(10), &registry).expect("registered");
        assert!(admission
            .try_admit_after(Duration::from_millis(10))
            .is_some());
        assert!(admission
            .try_admit_after(Duration::from_millis(11))
            .is_none());
        assert!(admission.refusing.load(Ordering::Relaxed));
        assert_eq!(admission.refused.get(), 1);
        assert_eq!(admission.unreported_late.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_arrival_is_forgotten_when_the_next_bytes_come_without_a_timestamp() {
        let arrival = Arrival::default();
        let now = SystemTime::now();
        assert_eq!(arrival.waited(|| now), None);
        arrival.record(Some(now - Duration::from_secs(2)));
        assert_eq!(arrival.waited(|| now), Some(Duration::from_secs(2)));
        // A clock stepped back: no wait, rather than a refusal.
        assert_eq!(
            arrival.waited(|| now - Duration::from_secs(3)),
            Some(Duration::ZERO)
        );
        arrival.record(None);
        assert_eq!(arrival.waited(|| now), None);
    }

    #[test]
    fn the_refusal_body_is_the_problem_every_error_has() {
        let body: serde_json::Value = serde_json::from_slice(REFUSAL_BODY).expect("JSON");
        assert_eq!(body["status"], 503);
        assert_eq!(body["title"], "Service Unavailable");
        assert_eq!(body["type"], "about:blank");
    }
}
