//! Which `x-request-id` a client may choose: the id is echoed in the response and written into
//! every log line of the request, so a value that could forge a log field, carry a
//! credential or grow a log line without bound is replaced by one of ours.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::telemetry::ids;

/// The header the request id travels in, both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-chosen id kept: a UUID or a trace id fits many times over.
const MAX_LEN: usize = 128;

/// At most 128 characters of `[A-Za-z0-9._-]`.
pub fn is_acceptable(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The request's id: the client's `x-request-id` when it is acceptable and sent once, else a
/// fresh one. An unacceptable value is removed from the request, so nothing of it is kept.
pub fn accept_or_make(headers: &mut HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(&HEADER).iter();
    match (values.next(), values.next()) {
        (None, _) => return fresh(),
        (Some(value), None) if is_acceptable(value.as_bytes()) => return value.clone(),
        _ => {}
    }
    headers.remove(&HEADER);
    fresh()
}

/// A UUID-shaped id drawn without a system call (the OS random source cost about 2 % of a
/// request).
fn fresh() -> HeaderValue {
    HeaderValue::from_bytes(&ids::uuid_bytes()).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_duplicated_or_unacceptable_id_is_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_static("trace-me-42"));
        assert_eq!(accept_or_make(&mut headers), "trace-me-42");
        headers.append(HEADER, HeaderValue::from_static("second"));
        let made = accept_or_make(&mut headers);
        assert!(
            uuid::Uuid::parse_str(made.to_str().expect("text")).is_ok(),
            "{made:?}"
        );
        assert!(!headers.contains_key(&HEADER));
        headers.insert(HEADER, HeaderValue::from_static("a=b"));
        assert_ne!(accept_or_make(&mut headers), "a=b");
        assert!(!headers.contains_key(&HEADER));
        assert_ne!(accept_or_make(&mut headers), accept_or_make(&mut headers));
    }

    #[test]
    fn only_short_plain_ids_are_acceptable() {
        assert!(is_acceptable(b"trace-me-42"));
        assert!(is_acceptable(b"0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(is_acceptable(b"svc.v2_req-1"));
        assert!(is_acceptable(&[b'a'; 128]));
        assert!(!is_acceptable(&[b'a'; 129]));
        assert!(!is_acceptable(b""));
        for bad in [
            &b"a b"[..],
            b"a\"b",
            b"a=b",
            b"Bearer k",
            b"id\tx",
            b"\xc3\xa9t\xc3\xa9",
        ] {
            assert!(!is_acceptable(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
