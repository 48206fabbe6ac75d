//! Tracing subscriber: human-readable text on a developer's machine, JSON lines elsewhere.

mod direct;
pub mod json;
pub mod writer;

use std::sync::OnceLock;

use http::HeaderName;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;

pub use direct::write_access_line;
use direct::DirectLines;
use writer::{LogWriter, WriterGuard};

/// Installs the global subscriber. `RUST_LOG`, when set, refines `level` per module.
/// Calling it twice is harmless (the second call keeps the first subscriber).
pub fn init(level: tracing::Level, format: LogFormat) {
    install(level, format, std::io::stdout, Shell::Default);
}

/// Keeps the container's log writer thread alive; dropping it writes what is still gathered.
#[must_use = "logs stop being written when the guard is dropped"]
pub struct LogGuard(#[allow(dead_code)] Option<WriterGuard>);

/// The container's writer, for the count of dropped lines.
static WRITER: OnceLock<LogWriter> = OnceLock::new();

/// The container's subscriber: like [`init`], but lines go to standard output through a
/// writer thread ([`writer`]), so a request formats its line and moves on instead of waiting
/// for the stdout lock and the write. When the reader of standard output stalls, new lines
/// are dropped and counted ([`dropped_lines`], `log_lines_dropped_total`): a request never
/// waits for the log. Hold the guard until exit.
pub fn init_container(level: tracing::Level, format: LogFormat) -> LogGuard {
    match writer::spawn(std::io::stdout(), writer::THREAD_BYTES) {
        Ok((writer, guard)) => {
            let _ = WRITER.set(writer.clone());
            install(level, format, writer, Shell::Default);
            LogGuard(Some(guard))
        }
        // No thread to be had at start: write directly rather than not at all.
        Err(_) => {
            init(level, format);
            LogGuard(None)
        }
    }
}

/// Log lines dropped since start because standard output did not keep up (container only;
/// elsewhere lines are written directly and never dropped).
pub fn dropped_lines() -> u64 {
    WRITER.get().map_or(0, LogWriter::dropped_lines)
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

fn install<W>(level: tracing::Level, format: LogFormat, writer: W, shell: Shell)
where
    W: for<'w> fmt::MakeWriter<'w> + Clone + Send + Sync + 'static,
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
