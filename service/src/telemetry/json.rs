//! JSON log lines written straight into the line buffer.
//!
//! The shape is tracing-subscriber's flattened JSON (`timestamp`, `level`, the event's fields,
//! `target`, then `span` or `spans`), which dashboards and tests already read. The stock
//! formatter collects every field into a `serde_json` map and parses each span's fields back
//! from text for every line: on the access log that was a third of a request's instructions.
//! Here fields are escaped and written as they are visited, and a span's fields are kept as a
//! ready JSON fragment.
//!
//! An event may carry the request's fields itself, as `span.method`, `span.route`, …: they are
//! written as the innermost span named `request`, exactly as if a span had carried them, so
//! the access log needs no span per request.

use std::cell::Cell;
use std::convert::Infallible;
use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Name prefix of the event fields that describe the request rather than the event.
pub const REQUEST_FIELD_PREFIX: &str = "span.";

/// The name the request's fields are shown under, as a span of that name would be.
pub const REQUEST_SPAN_NAME: &str = "request";

/// Bytes reserved for the request's fields: method, route, a UUID and a trace id fit.
const REQUEST_FIELDS_CAPACITY: usize = 192;

/// The event formatter: `span` holds the innermost span (a terminal or a log collector), or
/// `spans` lists every open span from the outermost (CloudWatch, where the Lambda runtime's
/// span carries the invocation's `requestId`).
pub struct JsonLines {
    pub span_list: bool,
}

/// Span fields as a JSON fragment (`"k":v,"k2":v2`), spliced into each line as it is.
#[derive(Default)]
pub struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = FieldWriter::new(&mut writer, true);
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut visitor = FieldWriter::new(&mut current.fields, first);
        fields.record(&mut visitor);
        visitor.result
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        writer.write_str(
            std::str::from_utf8(&timestamp(SystemTime::now())).map_err(|_| fmt::Error)?,
        )?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;

        let mut fields = FieldWriter::new(&mut writer, false);
        fields.spare = REQUEST_FIELDS.take();
        event.record(&mut fields);
        fields.result?;
        let request = fields.request;

        writer.write_str(",\"target\":\"")?;
        Escaping(&mut writer).write_str(meta.target())?;
        writer.write_char('"')?;

        let current = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if self.span_list {
            if current.is_some() || request.is_some() {
                writer.write_str(",\"spans\":[")?;
                let mut first = true;
                for span in current.iter().flat_map(|s| s.scope().from_root()) {
                    if !first {
                        writer.write_char(',')?;
                    }
                    first = false;
                    write_open_span(&mut writer, &span)?;
                }
                if let Some(request) = &request {
                    if !first {
                        writer.write_char(',')?;
                    }
                    write_span(&mut writer, REQUEST_SPAN_NAME, request)?;
                }
                writer.write_char(']')?;
            }
        } else if let Some(request) = &request {
            writer.write_str(",\"span\":")?;
            write_span(&mut writer, REQUEST_SPAN_NAME, request)?;
        } else if let Some(span) = &current {
            writer.write_str(",\"span\":")?;
            write_open_span(&mut writer, span)?;
        }
        if let Some(mut request) = request {
            request.clear();
            REQUEST_FIELDS.set(request);
        }
        writer.write_str("}\n")
    }
}

/// What the access line of an answered request says (see [`write_access_line`]).
pub struct AccessLine<'a> {
    /// The event's target: the module that logs it.
    pub target: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub status: u16,
    pub latency: Duration,
}

/// `latency` in milliseconds, as the access line's `latency_ms` field: the nanoseconds over a
/// million, rounded once (so JSON shows the exact decimal, `0.06008`, not `0.060079999999999995`).
pub fn millis(latency: Duration) -> f64 {
    nanos(latency) as f64 / 1e6
}

/// `latency` in whole nanoseconds (at most `u64::MAX`: some 584 years).
fn nanos(latency: Duration) -> u64 {
    u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX)
}

/// The line [`JsonLines`] writes, with no span open and no span list, for the access event
/// `info!(message = "request", span.method, span.route, span.request_id, span.trace_id,
/// status, latency_ms = millis(latency))`, byte for byte, written without the event: the
/// access log's shape is fixed, so its names need no visiting and no escaping, and its text
/// is appended as bytes, each constant run with the quotes around it in one piece.
pub fn write_access_line(out: &mut Vec<u8>, line: &AccessLine<'_>, now: SystemTime) {
    out.reserve(ACCESS_LINE_CAPACITY);
    out.extend_from_slice(b"{\"timestamp\":\"");
    out.extend_from_slice(&timestamp(now));
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"status\":");
    out.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
    out.extend_from_slice(b",\"latency_ms\":");
    push_millis(out, line.latency);
    // Each string field with what comes before it: the closing quote of the one before, its
    // name, its opening quote.
    let strings: [(&[u8], &str); 5] = [
        (b",\"target\":\"", line.target),
        (b"\",\"span\":{\"method\":\"", line.method),
        (b"\",\"route\":\"", line.route),
        (b"\",\"request_id\":\"", line.request_id),
        (b"\",\"trace_id\":\"", line.trace_id),
    ];
    for (before, text) in strings {
        out.extend_from_slice(before);
        push_escaped(out, text);
    }
    out.extend_from_slice(b"\",\"name\":\"request\"}}\n");
}

/// Room for an access line with a UUID request id: reserved once, no field grows the line.
const ACCESS_LINE_CAPACITY: usize = 384;

/// [`millis`] as [`write_f64`] writes it, from the integer: the whole milliseconds, then up to
/// six decimals without trailing zeros (`3`, `0.06008`, `0.000001`).
fn push_millis(out: &mut Vec<u8>, latency: Duration) {
    let nanos = nanos(latency);
    out.extend_from_slice(itoa::Buffer::new().format(nanos / 1_000_000).as_bytes());
    let fraction = nanos % 1_000_000;
    if fraction == 0 {
        return;
    }
    let mut digits = *b".000000";
    put_digits(&mut digits[1..], fraction);
    let end = digits
        .iter()
        .rposition(|&d| d != b'0')
        .map_or(0, |at| at + 1);
    out.extend_from_slice(&digits[..end]);
}

/// The inside of a JSON string for `text`, appended to `out`.
fn push_escaped(out: &mut Vec<u8>, text: &str) {
    let Ok(()) = escaped_pieces(text, |piece| {
        out.extend_from_slice(piece.as_bytes());
        Ok::<(), Infallible>(())
    });
}

thread_local! {
    /// The buffer a line's request fields were gathered in, kept for the thread's next line:
    /// an access line then allocates nothing for them.
    static REQUEST_FIELDS: std::cell::Cell<String> = const { std::cell::Cell::new(String::new()) };
}

fn write_open_span<'a, R: LookupSpan<'a>>(
    writer: &mut impl fmt::Write,
    span: &tracing_subscriber::registry::SpanRef<'a, R>,
) -> fmt::Result {
    let extensions = span.extensions();
    let fields = extensions
        .get::<FormattedFields<JsonFields>>()
        .map_or("", |f| f.fields.as_str());
    write_span(writer, span.name(), fields)
}

/// `time` in UTC as RFC 3339 with microseconds (`2026-12-04T15:20:03.190654Z`), the form
/// tracing-subscriber writes, without its formatting machinery.
fn timestamp(time: SystemTime) -> [u8; 27] {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (last, mut date_and_time) = SECOND.get();
    if last != seconds {
        date_and_time = second_text(seconds);
        SECOND.set((seconds, date_and_time));
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    text[..19].copy_from_slice(&date_and_time);
    put_digits(&mut text[20..26], u64::from(since_epoch.subsec_micros()));
    text
}

thread_local! {
    /// The second this thread last wrote a timestamp in, and its text: the lines of one second
    /// share the calendar arithmetic.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// `seconds` since the epoch as `2026-12-04T15:20:03`.
fn second_text(seconds: u64) -> [u8; 19] {
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    let mut text = *b"0000-00-00T00:00:00";
    put_digits(&mut text[0..4], year);
    put_digits(&mut text[5..7], month);
    put_digits(&mut text[8..10], day);
    put_digits(&mut text[11..13], of_day / 3600);
    put_digits(&mut text[14..16], of_day / 60 % 60);
    put_digits(&mut text[17..19], of_day % 60);
    text
}

/// `value`'s last `digits.len()` decimal digits, zero-padded, into `digits`.
fn put_digits(digits: &mut [u8], mut value: u64) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Year, month (1–12) and day (1–31) of a count of days since 1970-01-01 (H. Hinnant's
/// `civil_from_days`, for dates from 1970 on).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `{<fields>,"name":"<name>"}`. (Here and below, what can be is written in one piece: each
/// write passes two dynamic calls before it reaches the line.)
fn write_span(writer: &mut impl fmt::Write, name: &str, fields: &str) -> fmt::Result {
    writer.write_char('{')?;
    writer.write_str(fields)?;
    writer.write_str(match fields.is_empty() {
        true => "\"name\":\"",
        false => ",\"name\":\"",
    })?;
    Escaping(&mut *writer).write_str(name)?;
    writer.write_str("\"}")
}

/// Writes each field as `"name":value`, a comma before each but (if `first`) the first. Fields
/// named `span.*` go to `request` instead, as a fragment of their own.
struct FieldWriter<'a, W: fmt::Write> {
    out: &'a mut W,
    first: bool,
    request: Option<String>,
    /// What `request` starts from: a buffer kept from an earlier line, or a new one.
    spare: String,
    result: fmt::Result,
}

impl<'a, W: fmt::Write> FieldWriter<'a, W> {
    fn new(out: &'a mut W, first: bool) -> Self {
        Self {
            out,
            first,
            request: None,
            spare: String::new(),
            result: Ok(()),
        }
    }

    /// Writes `"name":` (after a comma when needed) to the line or to the request's fragment,
    /// then the value `write` gives.
    fn field(&mut self, field: &Field, write: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        self.result = match name.strip_prefix(REQUEST_FIELD_PREFIX) {
            Some(name) => {
                let request = self.request.get_or_insert_with(|| {
                    let mut request = std::mem::take(&mut self.spare);
                    request.reserve(REQUEST_FIELDS_CAPACITY);
                    request
                });
                let comma = !request.is_empty();
                entry(request, comma, name, write)
            }
            None => {
                let comma = !std::mem::replace(&mut self.first, false);
                entry(self.out, comma, name, write)
            }
        };
    }
}

fn entry(
    out: &mut dyn fmt::Write,
    comma: bool,
    name: &str,
    write: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result,
) -> fmt::Result {
    out.write_str(if comma { ",\"" } else { "\"" })?;
    Escaping(&mut *out).write_str(name)?;
    out.write_str("\":")?;
    write(out)
}

impl<W: fmt::Write> Visit for FieldWriter<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| write_escaped(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| {
            out.write_char('"')?;
            write!(Escaping(out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |out| {
            out.write_char('"')?;
            write!(Escaping(out), "{value}")?;
            out.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; serde_json writes them as null too.
        self.field(field, |out| match value.is_finite() {
            true => write_f64(out, value),
            false => out.write_str("null"),
        });
    }
}

/// A finite `value` exactly as `Display` writes it (`0.25`, `3`, `0.10154099999999999`), a
/// few times faster: ryu finds the same shortest digits that read back as `value` (both are
/// shortest round-trip, the closest to `value` among the shortest), and only the notation
/// differs. Where it does (`3.0`, and exponents for magnitudes below 1e-5 or of 1e16 and
/// more), the integer loses its `.0` and the exponent form goes to `Display` itself.
fn write_f64(out: &mut (impl fmt::Write + ?Sized), value: f64) -> fmt::Result {
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value);
    if text.contains('e') {
        return write!(out, "{value}");
    }
    out.write_str(text.strip_suffix(".0").unwrap_or(text))
}

/// `text` as a JSON string, quotes included.
fn write_escaped(out: &mut (impl fmt::Write + ?Sized), text: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaping(out).write_str(text)?;
    out.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string.
struct Escaping<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        escaped_pieces(text, |piece| self.0.write_str(piece))
    }
}

/// `text` as the inside of a JSON string, handed to `put` piece by piece: the runs that need
/// no escaping and, between them, each escaped byte's sequence. Most text (routes, ids,
/// messages) has nothing to escape: its runs are found eight bytes at a time and handed on
/// whole.
fn escaped_pieces<E>(text: &str, mut put: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(at) = next_escape(bytes, start) {
        put(&text[start..at])?;
        let (sequence, len) = escape_sequence(bytes[at]);
        // An escape sequence is ASCII: never empty here.
        put(std::str::from_utf8(&sequence[..len]).unwrap_or_default())?;
        start = at + 1;
    }
    put(&text[start..])
}

/// What a byte that [`needs_escape`] is written as, and how many of the six bytes that takes:
/// `\"`, `\\`, `\n`, `\r`, `\t`, or `\u00XX`.
fn escape_sequence(byte: u8) -> ([u8; 6], usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = |escaped: u8| ([b'\\', escaped, 0, 0, 0, 0], 2);
    match byte {
        b'"' => short(b'"'),
        b'\\' => short(b'\\'),
        b'\n' => short(b'n'),
        b'\r' => short(b'r'),
        b'\t' => short(b't'),
        _ => (
            [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ],
            6,
        ),
    }
}

/// Whether JSON needs `byte` escaped inside a string: control characters, `"` and `\\`.
fn needs_escape(byte: u8) -> bool {
    const ESCAPED: [bool; 256] = {
        let mut table = [false; 256];
        let mut byte = 0;
        while byte < 0x20 {
            table[byte] = true;
            byte += 1;
        }
        table[b'"' as usize] = true;
        table[b'\\' as usize] = true;
        table
    };
    ESCAPED[usize::from(byte)]
}

/// The index of the first byte at or after `from` that [`needs_escape`], if any.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // `below(word, n)` is non-zero exactly when some byte of `word` is below `n` (n <= 128;
    // "hasless" of the bit-twiddling folklore), so a zero word has no byte to escape. Which
    // byte it is, the byte-wise scan after it finds.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let mut at = from;
    let mut chunks = bytes[from..].chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0_u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let hit = below(word, 0x20)
            | below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1);
        if hit != 0 {
            break;
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| needs_escape(b))
        .map(|i| at + i)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::UNIX_EPOCH;

    use serde_json::{json, Value};

    /// The lines `log` writes through [`JsonLines`], parsed.
    fn lines(span_list: bool, log: impl FnOnce()) -> Vec<Value> {
        text(span_list, log)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The text `log` writes through [`JsonLines`].
    fn text(span_list: bool, log: impl FnOnce()) -> String {
        let buffer = Sink::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .fmt_fields(JsonFields)
            .event_format(JsonLines { span_list })
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        buffer.text()
    }

    /// `line` with its timestamp's digits masked.
    fn untimed(line: &str) -> String {
        let at = line.find("\"timestamp\":\"").expect("a timestamp") + 13;
        let end = at + "2026-12-04T15:40:03.190654Z".len();
        format!("{}<time>{}", &line[..at], &line[end..])
    }

    /// The access line written directly is the line the access event gave, byte for byte,
    /// for every latency notation and for values that need escaping.
    #[test]
    fn an_access_line_written_directly_is_the_events_line() {
        for (status, nanos, request_id) in [
            (200_u16, 51_300_u64, "5f2b8c1e-0a7d-4c3e-9b1a-2d4e6f8a0c1b"),
            (404, 3_000_000, "client \"id\" \\ with\ttab"),
            (201, 1, ""),
            (500, 0, "\u{1}é"),
            (503, 12_345_678_901, "x"),
            (200, 60_080, "y"),
        ] {
            let line = AccessLine {
                target: "order_service::access",
                method: "GET",
                route: "/orders/{id}",
                request_id,
                trace_id: "0af7651916cd43dd8448eb211c80319c",
                status,
                latency: Duration::from_nanos(nanos),
            };
            let from_event = text(false, || {
                tracing::info!(
                    target: "order_service::access",
                    message = "request",
                    span.method = line.method,
                    span.route = line.route,
                    span.request_id = line.request_id,
                    span.trace_id = line.trace_id,
                    status = line.status,
                    latency_ms = millis(line.latency)
                )
            });
            let mut direct = Vec::new();
            write_access_line(&mut direct, &line, SystemTime::now());
            let direct = String::from_utf8(direct).expect("UTF-8");
            assert_eq!(untimed(&direct), untimed(&from_event));
        }
    }

    /// The access line's latency is the exact decimal of its nanoseconds in milliseconds,
    /// however long the request took.
    #[test]
    fn latencies_are_written_as_exact_milliseconds() {
        for (nanos, written) in [
            (0_u64, "0"),
            (1, "0.000001"),
            (60_080, "0.06008"),
            (1_500_000, "1.5"),
            (3_000_000, "3"),
            (12_345_678_901, "12345.678901"),
        ] {
            let mut out = Vec::new();
            push_millis(&mut out, Duration::from_nanos(nanos));
            assert_eq!(String::from_utf8(out).expect("UTF-8"), written);
            let mut event = String::new();
            write_f64(&mut event, millis(Duration::from_nanos(nanos))).expect("written");
            assert_eq!(event, written);
        }
        // And the two agree on any latency up to a hundred seconds.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let latency = Duration::from_nanos(x % 100_000_000_000);
            let mut direct = Vec::new();
            push_millis(&mut direct, latency);
            let mut event = String::new();
            write_f64(&mut event, millis(latency)).expect("written");
            assert_eq!(
                String::from_utf8(direct).expect("UTF-8"),
                event,
                "{latency:?}"
            );
        }
    }

    /// A writer into a shared buffer; its clones write into the same one.
    #[derive(Clone, Default)]
    pub(in crate::telemetry) struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Sink {
        /// What was written so far.
        pub(in crate::telemetry) fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("buffer").clone()).expect("UTF-8")
        }
    }

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn request_fields_of_an_event_read_as_the_request_span() {
        let lines = lines(false, || {
            tracing::info!(
                span.method = "GET",
                span.route = "/orders/{id}",
                status = 200,
                latency_ms = 0.25,
                ok = true,
                "request"
            );
        });
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "request");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 0.25);
        assert_eq!(line["ok"], true);
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(
            line["span"],
            json!({"method": "GET", "route": "/orders/{id}", "name": "request"})
        );
        assert!(line.get("span.method").is_none(), "{line}");
    }

    #[test]
    fn a_real_span_shows_its_fields_and_lambda_lines_list_every_span() {
        let run = || {
            let outer = tracing::info_span!("Lambda runtime invoke", requestId = "inv-1");
            let _outer = outer.enter();
            let request = tracing::debug_span!("request", route = "/orders", trace_id = "ab\"c");
            request.in_scope(|| tracing::warn!(error = %"bad \n thing", "inside"));
            tracing::info!(span.route = "/orders", status = 201, "request");
        };
        let container = lines(false, run);
        assert_eq!(
            container[0]["span"],
            json!({"route": "/orders", "trace_id": "ab\"c", "name": "request"})
        );
        assert_eq!(container[0]["error"], "bad \n thing");
        assert_eq!(
            container[1]["span"],
            json!({"route": "/orders", "name": "request"})
        );

        let lambda = lines(true, run);
        let names = |line: &Value| -> Vec<Value> {
            line["spans"]
                .as_array()
                .expect("spans")
                .iter()
                .map(|s| s["name"].clone())
                .collect()
        };
        assert_eq!(names(&lambda[0]), ["Lambda runtime invoke", "request"]);
        assert_eq!(lambda[0]["spans"][0]["requestId"], "inv-1");
        assert_eq!(names(&lambda[1]), ["Lambda runtime invoke", "request"]);
        assert_eq!(lambda[1]["spans"][1]["route"], "/orders");
        assert!(lambda[1].get("span").is_none(), "{}", lambda[1]);
    }

    fn at(seconds: u64, micros: u32) -> String {
        let time = UNIX_EPOCH + Duration::new(seconds, micros * 1000);
        String::from_utf8(timestamp(time).to_vec()).expect("ASCII")
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_796_398_803, 190_654), "2026-12-04T15:40:03.190654Z");
        // The same second again: its text is reused, the microseconds are not.
        assert_eq!(at(1_796_398_803, 5), "2026-12-04T15:40:03.000005Z");
        assert_eq!(at(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
    }

    /// Latencies as `Display` wrote them before: the same text, noise digits and all.
    #[test]
    fn floats_are_written_as_display_writes_them() {
        let mut values = vec![
            0.0,
            0.0005,
            1234.5678,
            0.25,
            3.0,
            1e-7,
            0.000_01,
            0.000_012_3,
            1e16,
            1.5e300,
            0.1,
        ];
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for nanos in (0..20_000).chain((0..20_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % 100_000_000_000
        })) {
            values.push(std::time::Duration::from_nanos(nanos).as_secs_f64() * 1000.0);
        }
        for value in values {
            let mut text = String::new();
            write_f64(&mut text, value).expect("written");
            assert_eq!(text, value.to_string());
        }
    }

    #[test]
    fn only_quotes_backslashes_and_control_characters_are_escaped() {
        let naive = |text: &str| -> String {
            text.chars()
                .map(|c| match c {
                    '"' => "\\\"".to_owned(),
                    '\\' => "\\\\".to_owned(),
                    '\n' => "\\n".to_owned(),
                    '\r' => "\\r".to_owned(),
                    '\t' => "\\t".to_owned(),
                    c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32),
                    c => c.to_string(),
                })
                .collect()
        };
        let alphabet: Vec<char> = (0_u8..0x80).map(char::from).chain(['é', '✓']).collect();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..200 {
            let text: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Mostly plain characters, as log text is, and now and then one to escape.
                    match x % 16 {
                        0 => alphabet[(x >> 8) as usize % alphabet.len()],
                        _ => char::from(b'a' + (x >> 8) as u8 % 26),
                    }
                })
                .collect();
            let mut out = String::new();
            Escaping(&mut out).write_str(&text).expect("written");
            assert_eq!(out, naive(&text), "{text:?}");
        }
    }

    #[test]
    fn text_is_escaped_for_json() {
        let mut out = String::new();
        write_escaped(&mut out, "a\"b\\c\nd\u{1}é").expect("written");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        let parsed: String = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");
    }
}
