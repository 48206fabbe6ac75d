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
//! latency. In the container each connection records when its request's bytes reached the host
//! (the kernel's receive timestamp, [`Arrival`]), and a request that waited longer than
//! `QUEUE_WAIT_TIMEOUT_MS` before it was read is refused like one over the limit: its client
//! has likely given up, and answering it would only make the requests behind it late too.
//! Refusing the stale ones is cheap, so the standing queue drains to the target and the
//! requests admitted are fresh ("Fail at Scale", ACM Queue 2015: a queue that refuses what
//! waited too long).

pub mod limit;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::Router;
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::time::Instant;

use crate::error::PROBLEM_JSON;
use crate::metrics::MetricsError;
use limit::{Controller, LimitSettings};

/// The whole answer to a refused request: fixed, so nothing is formatted or allocated for it.
const REFUSAL_BODY: &[u8] = br#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"the service is at capacity; retry later"}"#;

/// Seconds a refused client is asked to wait: long enough to let the burst pass, short enough
/// that a retry lands on a recovered pod.
const RETRY_AFTER_SECONDS: &str = "1";

/// How long after a refusal the pod counts as overloaded, so that a request that waited longer
/// than `QUEUE_WAIT_TIMEOUT_MS` is refused: the 100 ms interval of CoDel and of "Fail at
/// Scale" (ACM Queue, 2015), which apply the short target only to a queue that has stood.
/// Under overload the concurrency limit refuses every few milliseconds, so this stays on.
const OVERLOAD_MEMORY: Duration = Duration::from_millis(100);

/// What a request may wait unread on a pod that has not been refusing: a burst, a busy node or
/// a throttled CPU is served a little late rather than refused. A request left unread for a
/// whole second is refused all the same: its client has likely given up, and the retry the
/// answer asks for comes no sooner than the answer would.
const QUIET_QUEUE_WAIT: Duration = Duration::from_secs(1);

/// How often refusals are summarised in the log (when there were any).
const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

pub struct Admission {
    in_flight: AtomicUsize,
    limit: AtomicUsize,
    /// `None`: the limit is fixed at the ceiling.
    controller: Option<Mutex<Controller>>,
    /// `QUEUE_WAIT_TIMEOUT_MS`: while overloaded, a request that waited longer than this
    /// before it was read is refused.
    max_queue_wait: Duration,
    /// When a request with an arrival time was last refused (nanoseconds since the Unix
    /// epoch): the pod counts as overloaded for [`OVERLOAD_MEMORY`] after it.
    last_refusal: AtomicU64,
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
            last_refusal: AtomicU64::new(0),
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
        self.refused.inc();
        self.unreported.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// [`Self::try_admit`] for a request that waited `waited` before it was read, at `now`:
    /// refused (and counted) when it waited longer than its target. The target is
    /// `QUEUE_WAIT_TIMEOUT_MS` while the pod is overloaded (it refused a request within
    /// [`OVERLOAD_MEMORY`]), and [`QUIET_QUEUE_WAIT`] otherwise, so a pod that is merely
    /// bursty or briefly short of CPU serves a little late rather than refuse.
    pub fn try_admit_after(self: &Arc<Self>, waited: Duration, now: SystemTime) -> Option<Permit> {
        let now = epoch_nanos(now);
        let since_refusal = now.saturating_sub(self.last_refusal.load(Ordering::Relaxed));
        let target = match u128::from(since_refusal) <= OVERLOAD_MEMORY.as_nanos() {
            true => self.max_queue_wait,
            false => QUIET_QUEUE_WAIT.max(self.max_queue_wait),
        };
        if waited > target {
            self.refused.inc();
            self.unreported.fetch_add(1, Ordering::Relaxed);
            self.unreported_late.fetch_add(1, Ordering::Relaxed);
            self.last_refusal.store(now, Ordering::Relaxed);
            return None;
        }
        let permit = self.try_admit();
        if permit.is_none() {
            self.last_refusal.store(now, Ordering::Relaxed);
        }
        permit
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
        if self.limit.swap(limit, Ordering::Relaxed) != limit {
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
/// stamped them on arrival: the connection's socket records it with every read, and admission
/// reads it to learn how long the request waited unread. Zero: not known (no timestamp came).
#[derive(Debug, Default)]
pub struct Arrival {
    nanos_since_epoch: AtomicU64,
}

impl Arrival {
    /// The bytes just read arrived `at`; `None` when they came without a timestamp, so an
    /// earlier request's time is never taken for this one's.
    pub fn record(&self, at: Option<SystemTime>) {
        self.nanos_since_epoch
            .store(at.map_or(0, epoch_nanos), Ordering::Relaxed);
    }

    /// How long the request has waited since its bytes arrived; `None` when not known. A
    /// clock stepped back since gives zero.
    pub fn waited(&self, now: SystemTime) -> Option<Duration> {
        match self.nanos_since_epoch.load(Ordering::Relaxed) {
            0 => None,
            nanos => {
                let arrived = SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos);
                Some(now.duration_since(arrived).unwrap_or_default())
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
        tick.tick().await;
        let Some(admission) = admission.upgrade() else {
            return;
        };
        let refused = admission.unreported.swap(0, Ordering::Relaxed);
        let waited_too_long = admission.unreported_late.swap(0, Ordering::Relaxed);
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
fn refusal(mut headers: HeaderMap) -> Response {
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
pub struct App {
    router: Router,
    /// `None`: nothing is refused (the metrics port, which sheds scrapes itself).
    admission: Option<Arc<Admission>>,
    /// Paths never refused (the probes), and the router that answers them.
    exempt: Option<(&'static [&'static str], Router)>,
    /// When this connection's request arrived (the container's connections; Lambda has none).
    arrival: Option<Arc<Arrival>>,
}

impl App {
    /// Requests to the `exempt` paths go to `exempt_router`, unrefused; every other request
    /// is admitted or refused before `router`.
    pub fn admitting(
        router: Router,
        admission: Arc<Admission>,
        exempt: &'static [&'static str],
        exempt_router: Router,
    ) -> Self {
        Self {
            router,
            admission: Some(admission),
            exempt: Some((exempt, exempt_router)),
            arrival: None,
        }
    }

    /// `router` with nothing refused.
    pub fn unlimited(router: Router) -> Self {
        Self {
            router,
            admission: None,
            exempt: None,
            arrival: None,
        }
    }

    /// This app for one connection, whose requests' arrival `arrival` records: a request that
    /// waited too long unread is refused.
    pub fn on_connection(&self, arrival: Arc<Arrival>) -> Self {
        Self {
            arrival: Some(arrival),
            ..self.clone()
        }
    }
}

impl App {
    /// How long the request being called waited unread, and when it was read.
    fn waited(&self) -> Option<(Duration, SystemTime)> {
        let now = SystemTime::now();
        Some((self.arrival.as_ref()?.waited(now)?, now))
    }
}

impl<B> tower::Service<http::Request<B>> for App
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Admitted;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A `Router` is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some((paths, exempt_router)) = &mut self.exempt {
            if paths.contains(&request.uri().path()) {
                return Admitted::Served(exempt_router.call(request), None);
            }
        }
        let permit = match &self.admission {
            Some(admission) => {
                let admitted = match self.waited() {
                    Some((waited, now)) => admission.try_admit_after(waited, now),
                    None => admission.try_admit(),
                };
                match admitted {
                    Some(permit) => Some(permit),
                    None => return Admitted::Refused(Some(request.into_parts().0.headers)),
                }
            }
            None => None,
        };
        Admitted::Served(self.router.call(request), permit)
    }
}

/// The router's answer, holding its permit (if any) until it is ready; or the refusal.
// Boxing the router's future would add an allocation to every answered request, to save
// moving a few hundred bytes of a refusal that is built, polled once and dropped.
#[allow(clippy::large_enum_variant)]
pub enum Admitted {
    Served(RouteFuture<Infallible>, Option<Permit>),
    /// The request's headers, to be replaced by the answer's.
    Refused(Option<HeaderMap>),
}

impl Future for Admitted {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Admitted::Served(inner, permit) => {
                let output = std::task::ready!(Pin::new(inner).poll(cx));
                // The latency ends with the answer's head; the body is the client's pace.
                drop(permit.take());
                Poll::Ready(output)
            }
            Admitted::Refused(headers) => {
                Poll::Ready(Ok(refusal(headers.take().unwrap_or_default())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[tokio::test]
    async fn after_a_refusal_a_request_that_waited_longer_than_the_target_is_refused() {
        let registry = Registry::new();
        let admission =
            Admission::new(1, false, Duration::from_millis(10), &registry).expect("registered");
        let now = SystemTime::now();
        let ms = Duration::from_millis;
        // Not overloaded: a wait far past the target is served, up to the quiet bound.
        let served = admission.try_admit_after(QUIET_QUEUE_WAIT, now);
        assert!(served.is_some());
        // At the limit: refused, and from now on the pod counts as overloaded.
        assert!(admission.try_admit_after(ms(0), now).is_none());
        drop(served);
        assert!(admission.try_admit_after(ms(11), now + ms(50)).is_none());
        assert_eq!(admission.unreported_late.load(Ordering::Relaxed), 1);
        // The refusal just now keeps it overloaded; a fresh request is served.
        let fresh = admission.try_admit_after(ms(10), now + ms(140));
        assert!(fresh.is_some());
        drop(fresh);
        // 100 ms without a refusal: the quiet bound again.
        assert!(admission.try_admit_after(ms(900), now + ms(260)).is_some());
        assert!(admission
            .try_admit_after(QUIET_QUEUE_WAIT + ms(1), now + ms(400))
            .is_none());
        assert_eq!(admission.refused.get(), 3);
    }

    #[tokio::test]
    async fn a_request_that_waited_longer_than_the_target_is_refused_and_counted() {
        let registry = Registry::new();
        let admission =
            Admission::new(8, false, Duration::from_millis(10), &registry).expect("registered");
        // Overloaded: a refusal just now.
        admission
            .last_refusal
            .store(epoch_nanos(SystemTime::now()), Ordering::Relaxed);
        let now = SystemTime::now();
        assert!(admission
            .try_admit_after(Duration::from_millis(10), now)
            .is_some());
        assert!(admission
            .try_admit_after(Duration::from_millis(11), now)
            .is_none());
        assert_eq!(admission.refused.get(), 1);
        assert_eq!(admission.unreported_late.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_arrival_is_forgotten_when_the_next_bytes_come_without_a_timestamp() {
        let arrival = Arrival::default();
        let now = SystemTime::now();
        assert_eq!(arrival.waited(now), None);
        arrival.record(Some(now - Duration::from_secs(2)));
        assert_eq!(arrival.waited(now), Some(Duration::from_secs(2)));
        // A clock stepped back: no wait, rather than a refusal.
        assert_eq!(
            arrival.waited(now - Duration::from_secs(3)),
            Some(Duration::ZERO)
        );
        arrival.record(None);
        assert_eq!(arrival.waited(now), None);
    }

    #[test]
    fn the_refusal_body_is_the_problem_every_error_has() {
        let body: serde_json::Value = serde_json::from_slice(REFUSAL_BODY).expect("JSON");
        assert_eq!(body["status"], 503);
        assert_eq!(body["title"], "Service Unavailable");
        assert_eq!(body["type"], "about:blank");
    }
}
