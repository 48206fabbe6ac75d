//! The access line written straight to the log's writer, past tracing's event machinery.
//!
//! Every request logs one access line. As a tracing event it is dispatched through the
//! subscriber stack, each of its seven fields visited through `dyn Value` and its name
//! escaped: a GET took 22 800 instructions with the event, 19 600 without. Its shape is
//! fixed, so the JSON subscriber carries a [`DirectLines`] layer that writes the same bytes
//! ([`json::write_access_line`]) to the same writer. No crate does this: tracing has no way
//! to hand a subscriber a preformatted line.
//!
//! The caller checks `tracing::enabled!` first, so `LOG_LEVEL` and `RUST_LOG` decide as they
//! do for the event. A subscriber without the layer (text lines, Lambda's span lists, a test's
//! own subscriber) gets the event as before.

use std::cell::RefCell;
use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::Layer;

use super::json;

/// A layer that does nothing for events and spans: it is found by type in the subscriber
/// ([`write_access_line`]) and holds the writer the JSON lines go to.
pub struct DirectLines {
    write: Box<WriteLine>,
}

/// Hands one whole line to the writer.
type WriteLine = dyn Fn(&[u8]) + Send + Sync;

impl DirectLines {
    /// Lines go to `writer`'s writers, one made per line.
    pub fn new<W>(writer: W) -> Self
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        Self {
            // A failed write is dropped, as the fmt layer drops it.
            write: Box::new(move |line| {
                let _ = writer.make_writer().write_all(line);
            }),
        }
    }

    /// Whether the access line can be written directly under this `RUST_LOG`: a span or field
    /// directive (`[...]`) filters events by their fields, which `tracing::enabled!` cannot
    /// see, so the line then stays an event.
    pub fn applies(rust_log: Option<&str>) -> bool {
        !rust_log.is_some_and(|directives| directives.contains('['))
    }
}

impl<S: tracing::Subscriber> Layer<S> for DirectLines {}

thread_local! {
    /// The line being written, kept for the thread's next one.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes `line` through the current subscriber's [`DirectLines`]; false when it has none
/// and the caller should log the access event instead. The caller has checked that the event
/// is enabled.
pub fn write_access_line(line: &json::AccessLine<'_>) -> bool {
    tracing::dispatcher::get_default(|dispatch| {
        let Some(direct) = dispatch.downcast_ref::<DirectLines>() else {
            return false;
        };
        LINE.with_borrow_mut(|text| {
            text.clear();
            json::write_access_line(text, line, std::time::SystemTime::now());
            (direct.write)(text);
        });
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use tracing_subscriber::prelude::*;

    use crate::telemetry::json::tests::Sink;

    fn line() -> json::AccessLine<'static> {
        json::AccessLine {
            target: "order_service::access",
            method: "GET",
            route: "/orders/{id}",
            request_id: "probe",
            trace_id: "0af7651916cd43dd8448eb211c80319c",
            status: 200,
            latency: std::time::Duration::from_micros(250),
        }
    }

    #[test]
    fn a_line_goes_to_the_writer_of_the_subscriber_that_carries_the_layer() {
        let buffer = Sink::default();
        let writer = buffer.clone();
        let with_layer =
            tracing_subscriber::registry().with(DirectLines::new(move || writer.clone()));
        assert!(tracing::subscriber::with_default(with_layer, || {
            write_access_line(&line())
        }));
        let written = buffer.text();
        assert!(written.ends_with("\"request_id\":\"probe\",\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\",\"name\":\"request\"}}\n"), "{written}");

        // Any other subscriber (text lines, Lambda's, a test's own) gets the event instead.
        let without = tracing_subscriber::registry();
        assert!(!tracing::subscriber::with_default(without, || {
            write_access_line(&line())
        }));
    }

    #[test]
    fn directives_on_spans_or_fields_keep_the_line_an_event() {
        assert!(DirectLines::applies(None));
        assert!(DirectLines::applies(Some("info,sqlx=warn")));
        assert!(!DirectLines::applies(Some(
            "info,[request{route=/orders}]=debug"
        )));
        assert!(!DirectLines::applies(Some(
            "order_service::access[{status=500}]=info"
        )));
    }
}
