//! Tracing subscriber: human-readable text on a developer's machine, JSON lines elsewhere.

mod direct;
pub mod json;

use std::io::{BufWriter, Write};
use std::sync::OnceLock;
use std::time::Duration;

use http::HeaderName;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, WorkerGuard};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;

pub use direct::write_access_line;
use direct::DirectLines;

/// Installs the global subscriber. `RUST_LOG`, when set, refines `level` per module.
/// Calling it twice is harmless (the second call keeps the first subscriber).
pub fn init(level: tracing::Level, format: LogFormat) {
    install(level, format, std::io::stdout, Shell::Default);
}

/// Keeps the container's log writer thread alive; dropping it writes what is still queued.
#[must_use = "logs stop being written when the guard is dropped"]
pub struct LogGuard(#[allow(dead_code)] WorkerGuard);

/// Lines the writer thread holds for standard output before new ones are dropped: at about
/// 300 bytes a line, some 40 MiB, a few seconds of a saturated pod's access log.
const QUEUED_LINES: usize = 128 * 1024;

/// Lines dropped because standard output did not keep up, since start.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// The container's subscriber: like [`init`], but lines go to standard output through a
/// writer thread, so a request formats its line and moves on instead of waiting for the
/// stdout lock and the write. When the reader of standard output stalls and the queue is
/// full, new lines are dropped and counted ([`dropped_lines`], `log_lines_dropped_total`):
/// a request never waits for the log. Hold the guard until exit.
pub fn init_container(level: tracing::Level, format: LogFormat) -> LogGuard {
    let (writer, guard) = non_blocking(std::io::stdout(), QUEUED_LINES);
    let _ = DROPPED.set(writer.error_counter());
    install(level, format, writer, Shell::Default);
    LogGuard(guard)
}

/// A writer that queues up to `lines` lines for a thread writing to `out`, and drops (and
/// counts) lines beyond that instead of making the caller wait. The thread writes the lines
/// it finds queued together, in as few writes to `out` as [`BATCH_BYTES`] allows.
pub fn non_blocking<W: Write + Send + 'static>(out: W, lines: usize) -> (NonBlocking, WorkerGuard) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(lines)
        .thread_name("log-writer")
        .finish(Batched {
            out: BufWriter::with_capacity(BATCH_BYTES, out),
        })
}

/// Bytes of lines the writer thread gathers before writing them to standard output: a few
/// hundred access-log lines in one write(2).
pub const BATCH_BYTES: usize = 64 * 1024;

/// How long the writer thread rests after writing a batch. Each line sent to a thread that is
/// asleep waiting for one wakes it (a system call on the request's path and a context switch);
/// while it rests, lines only queue, so a busy pod pays one wakeup and one write per rest, not
/// per line. A line on a quiet pod finds the thread waiting and is written at once; on a busy
/// one it waits at most this long.
const LINGER: Duration = Duration::from_millis(1);

/// The writer thread's output. tracing-appender's worker writes every line it takes from the
/// queue and flushes when the queue is empty: here the lines collect in a buffer (written
/// when full) and the flush writes them out together, where standard output (a `LineWriter`)
/// alone would make one write(2) per line.
struct Batched<W: Write> {
    out: BufWriter<W>,
}

impl<W: Write> Write for Batched<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let wrote = !self.out.buffer().is_empty();
        self.out.flush()?;
        if wrote {
            std::thread::sleep(LINGER);
        }
        Ok(())
    }
}

/// Log lines dropped since start because standard output did not keep up (container only;
/// elsewhere lines are written directly and never dropped).
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// The Lambda shell's subscriber: like [`init`], but the function's logging configuration
/// (`AWS_LAMBDA_LOG_LEVEL`, `AWS_LAMBDA_LOG_FORMAT`, set by Lambda when the function uses
/// advanced logging controls) wins over the service's own settings.
pub fn init_lambda(level: tracing::Level, format: LogFormat) {
    let (level, format) = lambda_log_settings(
        level,
        format,
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("AWS_LAMBDA_LOG_FORMAT").ok().as_deref(),
    );
    install(level, format, std::io::stdout, Shell::Lambda);
}

/// Where the lines are read, which decides their details.
enum Shell {
    /// A terminal or a log collector: JSON lines carry the innermost open span.
    Default,
    /// CloudWatch: no colours (it shows escape codes verbatim), and JSON lines list every
    /// open span, so each line of an invocation carries the runtime's `requestId`.
    Lambda,
}

fn install<W, O>(level: tracing::Level, format: LogFormat, writer: W, shell: Shell)
where
    W: for<'w> fmt::MakeWriter<'w, Writer = O> + Clone + Send + Sync + 'static,
    O: Write + Send + 'static,
{
    let lambda = matches!(shell, Shell::Lambda);
    let registry = tracing_subscriber::registry().with(filter(level));
    let _ = match format {
        LogFormat::Text => {
            let layer = fmt::layer().with_target(false).with_writer(writer);
            // Left alone elsewhere: the default honours NO_COLOR.
            let layer = if lambda {
                layer.with_ansi(false)
            } else {
                layer
            };
            registry.with(layer).try_init()
        }
        LogFormat::Json => {
            // Lambda's lines list the open spans, which a line written directly would miss.
            let direct = (!lambda
                && DirectLines::applies(std::env::var("RUST_LOG").ok().as_deref()))
            .then(|| DirectLines::new(writer.clone()));
            registry
                .with(
                    fmt::layer()
                        .fmt_fields(json::JsonFields)
                        .event_format(json::JsonLines { span_list: lambda })
                        .with_writer(writer),
                )
                .with(direct)
                .try_init()
        }
    };
}

/// Level and format after applying Lambda's logging configuration; unknown values are ignored.
pub fn lambda_log_settings(
    level: tracing::Level,
    format: LogFormat,
    aws_level: Option<&str>,
    aws_format: Option<&str>,
) -> (tracing::Level, LogFormat) {
    let level = match aws_level.map(str::to_ascii_uppercase).as_deref() {
        Some("TRACE") => tracing::Level::TRACE,
        Some("DEBUG") => tracing::Level::DEBUG,
        Some("INFO") => tracing::Level::INFO,
        Some("WARN") => tracing::Level::WARN,
        Some("ERROR" | "FATAL") => tracing::Level::ERROR,
        _ => level,
    };
    let format = match aws_format.map(str::to_ascii_uppercase).as_deref() {
        Some("JSON") => LogFormat::Json,
        Some("TEXT") => LogFormat::Text,
        _ => format,
    };
    (level, format)
}

/// `level` for our code; the AWS SDK and HTTP internals stay at `info` unless `RUST_LOG` asks,
/// so `LOG_LEVEL=debug` shows the service's own detail rather than hundreds of SDK lines.
fn filter(level: tracing::Level) -> EnvFilter {
    let mut filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::from_level(level).into())
        .from_env_lossy();
    if std::env::var_os("RUST_LOG").is_none() && level > tracing::Level::INFO {
        for noisy in [
            "aws_config",
            "aws_smithy_runtime",
            "aws_sdk_secretsmanager",
            "hyper_util",
            "h2",
            "rustls",
            "sqlx",
        ] {
            if let Ok(directive) = format!("{noisy}=info").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

/// The trace a request belongs to, taken from W3C `traceparent`, else from the
/// `X-Amzn-Trace-Id` that ALB, API Gateway and Lambda add, else started here. Every log line of
/// the request carries `trace_id`; the response returns it in `traceresponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits (W3C form; an X-Ray root `1-5759e988-bd86…` is its digits).
    pub trace_id: HexId<32>,
    /// This service's span in the trace: 16 lowercase hex digits.
    pub span_id: HexId<16>,
    pub sampled: bool,
}

/// `N` lowercase hex digits, kept inline: a request's ids cost no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexId<const N: usize>([u8; N]);

impl<const N: usize> HexId<N> {
    /// `text` when it is exactly `N` lowercase hex digits.
    fn parse(text: &[u8]) -> Option<Self> {
        let digits: [u8; N] = text.try_into().ok()?;
        digits
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            .then_some(Self(digits))
    }

    /// `N` random digits, one id for every 16.
    fn random() -> Self {
        let mut id = [b'0'; N];
        for digits in id.chunks_mut(16) {
            ids::hex(ids::next(), digits);
        }
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl<const N: usize> std::ops::Deref for HexId<N> {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> std::fmt::Debug for HexId<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> std::fmt::Display for HexId<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> PartialEq<&str> for HexId<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl TraceContext {
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        // Names made once: a name given as text is parsed on every lookup.
        const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
        const XRAY: HeaderName = HeaderName::from_static("x-amzn-trace-id");
        let header = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let (trace_id, sampled) = header(&TRACEPARENT)
            .and_then(parse_traceparent)
            .or_else(|| header(&XRAY).and_then(parse_xray))
            .unwrap_or_else(|| (HexId::random(), false));
        Self {
            trace_id,
            span_id: HexId::random(),
            sampled,
        }
    }

    /// `traceresponse` (W3C Trace Context level 2): version, trace id, our span, flags.
    pub fn response_header(&self) -> [u8; 55] {
        let mut header = *b"00-00000000000000000000000000000000-0000000000000000-00";
        header[3..35].copy_from_slice(&self.trace_id.0);
        header[36..52].copy_from_slice(&self.span_id.0);
        if self.sampled {
            header[54] = b'1';
        }
        header
    }

    /// The same trace in X-Ray's notation, `1-<8 hex>-<24 hex>`.
    pub fn xray_root(&self) -> String {
        format!("1-{}-{}", &self.trace_id[..8], &self.trace_id[8..])
    }
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `00-<32 hex trace>-<16 hex parent>-<2 hex flags>`; later versions may append fields.
/// All-zero ids and version `ff` are invalid, and an invalid header is ignored (W3C).
fn parse_traceparent(value: &str) -> Option<(HexId<32>, bool)> {
    let mut fields = value.trim().split('-');
    let (version, trace, parent, flags) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let valid = is_lower_hex(version, 2)
        && version != "ff"
        && (version != "00" || fields.next().is_none())
        && trace.bytes().any(|b| b != b'0')
        && is_lower_hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && is_lower_hex(flags, 2);
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
    let trace = HexId::parse(trace.as_bytes())?;
    valid.then_some((trace, sampled))
}

/// `Root=1-<8 hex>-<24 hex>;Parent=…;Sampled=1` (fields in any order; `Self=` from ALB too).
fn parse_xray(value: &str) -> Option<(HexId<32>, bool)> {
    let field = |name: &str| {
        value.split(';').find_map(|f| {
            let (key, val) = f.trim().split_once('=')?;
            key.eq_ignore_ascii_case(name).then_some(val)
        })
    };
    let root = field("Root")?;
    let (time, random) = root.strip_prefix("1-")?.split_once('-')?;
    let (time, random) = (time.to_ascii_lowercase(), random.to_ascii_lowercase());
    let valid = is_lower_hex(&time, 8) && is_lower_hex(&random, 24);
    let trace = HexId::parse(format!("{time}{random}").as_bytes())?;
    valid.then_some((trace, field("Sampled") == Some("1")))
}

/// Ids for requests and traces without a system call each: SplitMix64 over a counter seeded
/// once from the OS. Unique within the process (SplitMix64 is a bijection, and no counter
/// value is used twice) and unpredictable enough for correlation ids; they are not secrets.
pub mod ids {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// SplitMix64's step.
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    /// Counter values a thread takes for itself at a time.
    const BLOCK: u64 = 1 << 32;

    thread_local! {
        /// The thread's next counter value and how many of its block are left. A request
        /// takes four or five ids, and one counter shared by every worker thread would move
        /// its cache line between the cores for each of them; a thread touches the shared
        /// counter once per block.
        static STATE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }

    /// The start of a block of counter values no other thread has.
    fn reserve_block() -> u64 {
        static COUNTER: OnceLock<AtomicU64> = OnceLock::new();
        COUNTER
            .get_or_init(|| {
                let seed = uuid::Uuid::new_v4().as_u64_pair();
                AtomicU64::new(seed.0 ^ seed.1)
            })
            .fetch_add(GAMMA.wrapping_mul(BLOCK), Ordering::Relaxed)
    }

    /// SplitMix64's output function.
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn next() -> u64 {
        STATE.with(|state| {
            let (mut counter, mut left) = state.get();
            if left == 0 {
                (counter, left) = (reserve_block(), BLOCK);
            }
            counter = counter.wrapping_add(GAMMA);
            state.set((counter, left - 1));
            mix(counter)
        })
    }

    /// A version-4-shaped UUID (`8-4-4-4-12` hex, ASCII) from two ids, without an allocation:
    /// what `x-request-id` looked like when it came from the OS random source.
    pub fn uuid_bytes() -> [u8; 36] {
        let bits = (u128::from(next()) << 64) | u128::from(next());
        let mut text = [0u8; 36];
        uuid::Builder::from_random_bytes(bits.to_be_bytes())
            .into_uuid()
            .hyphenated()
            .encode_lower(&mut text);
        text
    }

    /// Writes `value`'s low `out.len()` nibbles (at most 16) as lowercase hex, most significant
    /// first.
    pub fn hex(value: u64, out: &mut [u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut rest = value;
        for digit in out.iter_mut().rev() {
            *digit = DIGITS[(rest & 0xf) as usize];
            rest >>= 4;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn context(headers: &[(&str, &str)]) -> TraceContext {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                http::HeaderValue::from_str(value).expect("value"),
            );
        }
        TraceContext::from_headers(&map)
    }

    #[test]
    fn ids_are_distinct_and_request_ids_look_like_uuids() {
        let many: std::collections::HashSet<u64> = (0..10_000).map(|_| ids::next()).collect();
        assert_eq!(many.len(), 10_000);
        let id = String::from_utf8(ids::uuid_bytes().to_vec()).expect("ASCII");
        let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4);
        assert_ne!(id.as_bytes(), ids::uuid_bytes());
    }

    #[test]
    fn threads_draw_ids_no_other_thread_draws() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..1_000).map(|_| ids::next()).collect::<Vec<_>>()))
            .collect();
        let all: std::collections::HashSet<u64> = threads
            .into_iter()
            .flat_map(|thread| thread.join().expect("thread"))
            .collect();
        assert_eq!(all.len(), 4_000);
    }

    #[test]
    fn hex_writes_the_low_digits_most_significant_first() {
        let mut out = [0u8; 16];
        ids::hex(0x0123_4567_89ab_cdef, &mut out);
        assert_eq!(&out, b"0123456789abcdef");
        let mut low = [0u8; 4];
        ids::hex(0x0123_4567_89ab_cdef, &mut low);
        assert_eq!(&low, b"cdef");
        let fresh = TraceContext::from_headers(&http::HeaderMap::new());
        assert!(is_lower_hex(&fresh.trace_id, 32) && is_lower_hex(&fresh.span_id, 16));
    }

    #[test]
    fn traceparent_wins_over_the_load_balancers_trace() {
        let ctx = context(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793",
            ),
        ]);
        assert_eq!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(ctx.sampled);
        assert!(is_lower_hex(&ctx.span_id, 16) && ctx.span_id != "00f067aa0ba902b7");
        let response = String::from_utf8(ctx.response_header().to_vec()).expect("ASCII");
        assert!(
            response.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{response}"
        );
        assert!(response.ends_with("-01"), "{response}");
    }

    #[test]
    fn xray_header_gives_the_same_trace_in_w3c_form() {
        let ctx = context(&[(
            "x-amzn-trace-id",
            "Self=1-67891234-12456789abcdef012345678;Root=1-5759E988-BD862E3FE1BE46A994272793;Sampled=1",
        )]);
        assert_eq!(ctx.trace_id, "5759e988bd862e3fe1be46a994272793");
        assert_eq!(ctx.xray_root(), "1-5759e988-bd862e3fe1be46a994272793");
        assert!(ctx.sampled);
    }

    #[test]
    fn invalid_or_missing_context_starts_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let ctx = context(&[("traceparent", bad)]);
            assert_ne!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
            assert!(is_lower_hex(&ctx.trace_id, 32), "{bad}");
        }
        let fresh = context(&[]);
        assert!(is_lower_hex(&fresh.trace_id, 32) && !fresh.sampled);
        assert_ne!(fresh.trace_id, context(&[]).trace_id);
        // A later version may carry more fields.
        let future = context(&[(
            "traceparent",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever",
        )]);
        assert_eq!(future.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    /// A stdout nobody reads (a stalled log collector, a full pipe): every write waits
    /// until the test lets go.
    struct Stalled(std::sync::mpsc::Receiver<()>);

    impl std::io::Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_stdout_drops_and_counts_lines_instead_of_blocking_the_caller() {
        use std::io::Write as _;
        const LINE: &[u8] = b"{\"message\":\"request\"}\n";
        const SENT: usize = 10_000;
        let (release, stalled) = std::sync::mpsc::channel();
        let (writer, guard) = non_blocking(Stalled(stalled), 4);
        let counter = writer.error_counter();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut writer = writer;
            for _ in 0..SENT {
                let _ = writer.write_all(LINE);
            }
            let _ = done.send(());
        });
        let returned = finished.recv_timeout(std::time::Duration::from_secs(10));
        drop(release);
        assert!(returned.is_ok(), "the logging thread waited for stdout");
        // The writer thread holds one line and at most a batch's worth in its buffer, at most 4
        // are queued: the rest are dropped.
        let held = 1 + BATCH_BYTES / LINE.len() + 4;
        assert!(
            counter.dropped_lines() >= SENT - held,
            "{}",
            counter.dropped_lines()
        );
        drop(guard);
    }

    /// A stdout that records each write; the first one waits until the test lets go.
    #[derive(Clone)]
    struct Recording {
        writes: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
        first: std::sync::Arc<std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>>,
    }

    impl Recording {
        fn new(first: Option<std::sync::mpsc::Receiver<()>>) -> Self {
            Self {
                writes: Default::default(),
                first: std::sync::Arc::new(std::sync::Mutex::new(first)),
            }
        }

        fn writes(&self) -> Vec<Vec<u8>> {
            self.writes.lock().expect("not poisoned").clone()
        }
    }

    impl std::io::Write for Recording {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(wait) = self.first.lock().expect("not poisoned").take() {
                let _ = wait.recv();
            }
            self.writes.lock().expect("not poisoned").push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_queued_together_reach_stdout_in_one_write() {
        use std::io::Write as _;
        let (release, first) = std::sync::mpsc::channel();
        let out = Recording::new(Some(first));
        let (mut writer, guard) = non_blocking(out.clone(), 1024);
        // The writer thread takes the first line and waits in its write while 999 more queue.
        let lines: Vec<String> = (0..1000).map(|n| format!("{{\"n\":{n}}}\n")).collect();
        for line in &lines {
            writer.write_all(line.as_bytes()).expect("queued");
        }
        drop(release);
        let expected = lines.concat().into_bytes();
        let waited = std::time::Instant::now();
        while out.writes().concat().len() < expected.len()
            && waited.elapsed() < std::time::Duration::from_secs(10)
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(guard);
        let writes = out.writes();
        assert_eq!(writes.concat(), expected, "every line, in order");
        // One write for what was queued when the thread started, one for the rest; a stdout
        // written line by line would have seen 1000.
        assert!(writes.len() <= 2, "{} writes for 1000 lines", writes.len());
    }

    #[test]
    fn a_line_on_a_quiet_pod_is_written_without_waiting_for_more() {
        use std::io::Write as _;
        let out = Recording::new(None);
        let (mut writer, _guard) = non_blocking(out.clone(), 1024);
        writer
            .write_all(b"{\"message\":\"alone\"}\n")
            .expect("queued");
        let waited = std::time::Instant::now();
        while out.writes().is_empty() && waited.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(out.writes(), [b"{\"message\":\"alone\"}\n".to_vec()]);
    }

    #[test]
    fn lambda_logging_configuration_wins_when_set() {
        assert_eq!(
            lambda_log_settings(Level::INFO, LogFormat::Text, Some("DEBUG"), Some("JSON")),
            (Level::DEBUG, LogFormat::Json)
        );
        assert_eq!(
            lambda_log_settings(Level::INFO, LogFormat::Json, Some("FATAL"), Some("Text")),
            (Level::ERROR, LogFormat::Text)
        );
    }

    #[test]
    fn service_settings_stay_when_lambda_sets_nothing_usable() {
        assert_eq!(
            lambda_log_settings(Level::WARN, LogFormat::Json, None, None),
            (Level::WARN, LogFormat::Json)
        );
        assert_eq!(
            lambda_log_settings(Level::WARN, LogFormat::Text, Some("loud"), Some("xml")),
            (Level::WARN, LogFormat::Text)
        );
    }
}
