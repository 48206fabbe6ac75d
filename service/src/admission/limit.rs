//! The adaptive concurrency limit: how many API requests may be in flight, found from their
//! latency rather than guessed.
//!
//! The controller follows Envoy's adaptive concurrency filter (a gradient against a minimum
//! round-trip time). Every `window` it takes the median latency of the requests that finished,
//! compares it with the baseline (the median latency measured at a small concurrency), and
//! scales the limit by `gradient = baseline × (1 + buffer) / median`, clamped to 0.5–2, plus
//! a headroom of √limit. While latency stays near the baseline the limit rises; once requests
//! queue for the CPU or the database, latency grows with the number in flight and the limit
//! falls back to about where the server is busy but nothing waits (the knee). For a server of
//! `c` parallel workers the fixed point is `limit ≈ 1.25 c + √limit`.
//!
//! The limit starts at the ceiling (where a fixed bound would be) and comes down once latency
//! shows queueing. A window whose traffic stayed below half the limit changes nothing (as in
//! Netflix's concurrency-limits: it says nothing about the limit), so bursts on a quiet pod are
//! not refused. The baseline is any window served at `min_limit` or fewer in flight (free,
//! on a quiet pod); a pod that stays busy has it measured by pinning the limit to `min_limit`
//! for `probe_samples` requests, at start and again every `probe_interval`, so it follows a
//! database or a CPU that got slower for good. A median below the baseline lowers the
//! baseline at once, so the limit recovers as soon as a slowdown ends.
//!
//! Written here rather than taken from a crate: the Rust crates for this (`tower-acc`,
//! `tower-resilience-adaptive`, both 0.x) admit by waiting on a semaphore in `poll_ready`,
//! where this service must refuse at once and cheaply, read the current limit with one
//! atomic load on every request, and publish it as a gauge. The controller is ~100 lines and
//! tested against simulated servers below.

use std::time::Duration;

use tokio::time::Instant;

/// What the controller may do; [`LimitSettings::new`] holds the service's defaults.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    /// The limit never goes below this (and the baseline is measured at it).
    pub min_limit: usize,
    /// The hard ceiling, `MAX_IN_FLIGHT_REQUESTS`.
    pub max_limit: usize,
    /// How often the limit is adjusted (given enough finished requests).
    pub window: Duration,
    /// How often the baseline latency is measured again (±25 % jitter).
    pub probe_interval: Duration,
    /// Finished requests the baseline is the median of.
    pub probe_samples: usize,
    /// Latency above the baseline that still counts as "not queueing", as a fraction.
    pub buffer: f64,
}

impl LimitSettings {
    /// Envoy's defaults, apart from a shorter probe interval: a probe costs a few hundred
    /// microseconds at a small concurrency, and a pod whose database got slower for good
    /// should not run at the minimum limit for a whole minute.
    pub fn new(max_limit: usize) -> Self {
        Self {
            min_limit: 3.min(max_limit),
            max_limit,
            window: Duration::from_millis(100),
            probe_interval: Duration::from_secs(10),
            probe_samples: 50,
            buffer: 0.25,
        }
    }
}

/// Fewer finished requests than this in a window leave the limit alone: a median of two is noise.
const MIN_WINDOW_SAMPLES: usize = 5;
/// Latencies kept per window: enough for a stable median at any rate, bounded memory.
const MAX_WINDOW_SAMPLES: usize = 1024;

#[derive(Debug)]
pub struct Controller {
    settings: LimitSettings,
    limit: f64,
    baseline: Option<Duration>,
    /// `Some(limit to return to)` while the baseline is being measured.
    probing: Option<f64>,
    /// Requests admitted before this instant ran at another limit: their latency is not this
    /// window's (or this probe's).
    window_start: Instant,
    samples: Vec<Duration>,
    /// The most requests in flight seen this window: a limit the traffic never reaches is not
    /// raised further (it would say nothing about the server).
    busiest: usize,
    next_probe: Instant,
    jitter: u64,
}

impl Controller {
    /// Starts at the ceiling, with no baseline yet.
    pub fn new(settings: LimitSettings, now: Instant, seed: u64) -> Self {
        Self {
            settings,
            limit: settings.max_limit as f64,
            baseline: None,
            probing: None,
            window_start: now,
            samples: Vec::with_capacity(MAX_WINDOW_SAMPLES),
            busiest: 0,
            next_probe: now,
            jitter: seed | 1,
        }
    }

    /// The limit to enforce now.
    pub fn limit(&self) -> usize {
        (self.limit.round() as usize).clamp(self.settings.min_limit, self.settings.max_limit)
    }

    /// One finished request: admitted at `admitted_at` when `in_flight` were in flight
    /// (itself included), finished at `now`. Answers the limit to enforce from now on.
    pub fn on_finished(&mut self, admitted_at: Instant, in_flight: usize, now: Instant) -> usize {
        if admitted_at < self.window_start {
            return self.limit();
        }
        if self.samples.len() < MAX_WINDOW_SAMPLES {
            self.samples
                .push(now.saturating_duration_since(admitted_at));
        }
        self.busiest = self.busiest.max(in_flight);
        if let Some(resume) = self.probing {
            if self.samples.len() >= self.settings.probe_samples {
                self.baseline = Some(median(&mut self.samples));
                self.limit = resume;
                self.probing = None;
                self.next_probe = now + self.probe_interval();
                self.start_window(now);
            }
        } else if now.saturating_duration_since(self.window_start) >= self.settings.window
            && self.samples.len() >= MIN_WINDOW_SAMPLES
        {
            let latency = median(&mut self.samples);
            // Served at a small concurrency: nothing queued, a baseline for free.
            let quiet = self.busiest <= self.settings.min_limit;
            match self.baseline {
                Some(baseline) if !quiet && latency >= baseline => {}
                _ => {
                    if quiet || self.baseline.is_none() {
                        // A first baseline taken under load is measured properly soon.
                        self.next_probe = match quiet {
                            true => now + self.probe_interval(),
                            false => now,
                        };
                    }
                    self.baseline = Some(latency);
                }
            }
            // Traffic that stayed below half the limit says nothing about the limit.
            if (self.busiest as f64) * 2.0 >= self.limit {
                self.adjust(latency);
                if now >= self.next_probe {
                    self.probing = Some(self.limit);
                    self.limit = self.settings.min_limit as f64;
                }
            }
            self.start_window(now);
        }
        self.limit()
    }

    fn adjust(&mut self, latency: Duration) {
        let baseline = self.baseline.unwrap_or(latency);
        let target = baseline.as_secs_f64() * (1.0 + self.settings.buffer);
        let gradient = (target / latency.as_secs_f64().max(1e-9)).clamp(0.5, 2.0);
        let scaled = self.limit * gradient;
        self.limit = (scaled + scaled.sqrt()).clamp(
            self.settings.min_limit as f64,
            self.settings.max_limit as f64,
        );
    }

    fn start_window(&mut self, now: Instant) {
        self.window_start = now;
        self.samples.clear();
        self.busiest = 0;
    }

    /// `probe_interval` ±25 %, so pods started together do not all probe at once.
    fn probe_interval(&mut self) -> Duration {
        // xorshift64: no random source needed for a jitter.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let factor = 0.75 + (self.jitter % 1000) as f64 / 2000.0;
        self.settings.probe_interval.mul_f64(factor)
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    let middle = samples.len() / 2;
    *samples.select_nth_unstable(middle).1
}

#[cfg(test)]
mod tests {
    //! A simulated server on tokio's paused clock: `workers` requests are served at once, each
    //! taking `service_time`; more wait for a worker (the queueing a CPU or a pool shows).
    //! An open-loop load offers four times its capacity; the controller alone decides what
    //! is admitted.

    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;

    /// One ceiling (`MAX_IN_FLIGHT_REQUESTS`) for every simulated server: the same settings
    /// must find the knee of each.
    const CEILING: usize = 256;

    struct Server {
        workers: Arc<Semaphore>,
        service_time: Cell<Duration>,
    }

    struct Run {
        epoch: Instant,
        controller: RefCell<Controller>,
        in_flight: Cell<usize>,
        served: Cell<u64>,
        refused: Cell<u64>,
        /// (time, limit, served so far) every 100 ms.
        trace: RefCell<Vec<(Duration, usize, u64)>>,
    }

    /// Offers `rate` requests per second to `server` for `seconds`.
    async fn offer(run: &Rc<Run>, server: &Rc<Server>, rate: u64, seconds: u64) {
        let start = Instant::now();
        let interval = Duration::from_nanos(1_000_000_000 / rate);
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let mut next = start;
                let mut next_trace = start;
                while next < start + Duration::from_secs(seconds) {
                    tokio::time::sleep_until(next).await;
                    next += interval;
                    let now = Instant::now();
                    if now >= next_trace {
                        let limit = run.controller.borrow().limit();
                        let point = (now - run.epoch, limit, run.served.get());
                        run.trace.borrow_mut().push(point);
                        next_trace += Duration::from_millis(100);
                    }
                    let limit = run.controller.borrow().limit();
                    if run.in_flight.get() >= limit {
                        run.refused.set(run.refused.get() + 1);
                        continue;
                    }
                    run.in_flight.set(run.in_flight.get() + 1);
                    let in_flight = run.in_flight.get();
                    let (run, server) = (Rc::clone(run), Rc::clone(server));
                    tokio::task::spawn_local(async move {
                        let admitted = Instant::now();
                        let worker = server.workers.acquire().await.expect("open");
                        tokio::time::sleep(server.service_time.get()).await;
                        drop(worker);
                        run.in_flight.set(run.in_flight.get() - 1);
                        run.served.set(run.served.get() + 1);
                        run.controller.borrow_mut().on_finished(
                            admitted,
                            in_flight,
                            Instant::now(),
                        );
                    });
                }
            })
            .await;
        local.await;
    }

    fn new_run(settings: LimitSettings) -> Rc<Run> {
        Rc::new(Run {
            epoch: Instant::now(),
            controller: RefCell::new(Controller::new(settings, Instant::now(), 7)),
            in_flight: Cell::new(0),
            served: Cell::new(0),
            refused: Cell::new(0),
            trace: RefCell::new(Vec::new()),
        })
    }

    fn server(workers: usize, service_time: Duration) -> Rc<Server> {
        Rc::new(Server {
            workers: Arc::new(Semaphore::new(workers)),
            service_time: Cell::new(service_time),
        })
    }

    /// Mean limit over the trace points in `from..to` seconds since the run began.
    fn mean_limit(run: &Run, from: u64, to: u64) -> f64 {
        let trace = run.trace.borrow();
        let points: Vec<usize> = trace
            .iter()
            .filter(|(t, _, _)| *t >= Duration::from_secs(from) && *t < Duration::from_secs(to))
            .map(|(_, l, _)| *l)
            .collect();
        points.iter().sum::<usize>() as f64 / points.len() as f64
    }

    /// Requests served per second in `from..to` seconds since the run began.
    fn served_per_second(run: &Run, from: u64, to: u64) -> f64 {
        let trace = run.trace.borrow();
        let served_at = |second: u64| {
            trace
                .iter()
                .find(|(t, _, _)| *t >= Duration::from_secs(second))
                .map_or(run.served.get(), |(_, _, served)| *served)
        };
        (served_at(to) - served_at(from)) as f64 / (to - from) as f64
    }

    /// Converges near the knee: at least `workers` in flight (nothing left idle), at most
    /// what the gradient's buffer and headroom add on top of it.
    fn assert_near_knee(limit: f64, workers: usize) {
        let workers = workers as f64;
        let most = 1.25 * workers + 2.0 * (2.0 * workers).sqrt() + 2.0;
        assert!(
            (workers..=most).contains(&limit),
            "limit {limit:.1} for {workers} workers (expected {workers}..={most:.1})"
        );
    }

    async fn converges_near_the_knee(workers: usize, service_time: Duration) {
        let run = new_run(LimitSettings::new(CEILING));
        let server = server(workers, service_time);
        let capacity = workers as u64 * 1_000_000 / service_time.as_micros() as u64;
        offer(&run, &server, 4 * capacity, 10).await;
        assert_near_knee(mean_limit(&run, 5, 10), workers);
        // Near the knee every worker stays busy: goodput close to capacity.
        let goodput = served_per_second(&run, 5, 10);
        assert!(
            goodput >= 0.85 * capacity as f64,
            "served {goodput:.0}/s of a capacity of {capacity}/s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_converges_near_the_knee_of_a_small_server() {
        converges_near_the_knee(4, Duration::from_millis(10)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_converges_near_the_knee_of_a_large_server() {
        converges_near_the_knee(48, Duration::from_millis(20)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_recovers_after_a_slowdown() {
        // Probes every 2 s, so the test sees the slower baseline measured soon.
        let run = new_run(LimitSettings {
            probe_interval: Duration::from_secs(2),
            ..LimitSettings::new(CEILING)
        });
        let server = server(8, Duration::from_millis(10));
        offer(&run, &server, 3_200, 6).await;
        let before = mean_limit(&run, 3, 6);
        assert_near_knee(before, 8);

        // The database gets three times slower for 6 s: the limit falls at once (queueing
        // shows), then the next probe finds the slower baseline.
        server.service_time.set(Duration::from_millis(30));
        offer(&run, &server, 3_200, 6).await;
        let first_window = run
            .trace
            .borrow()
            .iter()
            .filter(|(t, _, _)| t.as_secs() == 6)
            .map(|(_, l, _)| *l)
            .min()
            .expect("traced");
        assert!(
            (first_window as f64) < before,
            "limit {first_window} did not fall below {before:.1} when latency tripled"
        );

        server.service_time.set(Duration::from_millis(10));
        offer(&run, &server, 3_200, 6).await;
        let after = mean_limit(&run, 15, 18);
        assert_near_knee(after, 8);
    }

    #[test]
    fn the_ceiling_and_the_floor_hold() {
        let start = Instant::now();
        let settings = LimitSettings {
            probe_interval: Duration::from_secs(3600),
            ..LimitSettings::new(4)
        };
        let mut controller = Controller::new(settings, start, 1);
        // Starts where a fixed bound would be.
        assert_eq!(controller.limit(), 4);
        let mut now = start;
        let mut serve = |latency_ms: u64, controller: &mut Controller| {
            for _ in 0..100 {
                for _ in 0..60 {
                    now += Duration::from_millis(2);
                    controller.on_finished(now - Duration::from_millis(latency_ms), 4, now);
                }
            }
        };
        // Fast answers at full concurrency, window after window: no further than the ceiling.
        serve(1, &mut controller);
        assert_eq!(controller.limit(), 4);
        // Answers ten times slower than the baseline: down to the floor, not below.
        serve(10, &mut controller);
        assert_eq!(controller.limit(), 3);
        // Fast again: back up.
        serve(1, &mut controller);
        assert_eq!(controller.limit(), 4);
    }

    #[test]
    fn a_quiet_pod_keeps_its_limit_through_bursts() {
        let start = Instant::now();
        let mut controller = Controller::new(LimitSettings::new(32), start, 1);
        let mut now = start;
        // Bursts of 8 that queue (each answer 4x slower than one alone), between quiet
        // stretches: the traffic never comes near half the limit, so nothing is refused.
        for _ in 0..50 {
            for _ in 0..20 {
                now += Duration::from_millis(10);
                controller.on_finished(now - Duration::from_millis(1), 1, now);
            }
            for _ in 0..8 {
                now += Duration::from_millis(1);
                controller.on_finished(now - Duration::from_millis(4), 8, now);
            }
        }
        assert_eq!(controller.limit(), 32);
    }
}
