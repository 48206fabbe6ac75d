//! Which `x-request-id` a client may choose: the id is echoed in the response and written into
//! every log line of the request, so a value that could forge a log field, carry a
//! credential or grow a log line without bound is replaced by one of ours.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// The header the request id travels in, both ways.
const HEADER: &str = "x-request-id";

/// Longest client-chosen id kept: a UUID or a trace id fits many times over.
const MAX_LEN: usize = 128;

/// At most 128 characters of `[A-Za-z0-9._-]`.
pub fn is_acceptable(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Removes a client's `x-request-id` that is not acceptable (or is sent more than once), so
/// the layer after this one makes a fresh id; nothing of the client's value is kept.
pub async fn drop_unacceptable(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let mut values = headers.get_all(HEADER).iter();
    let keep = match (values.next(), values.next()) {
        (None, _) => true,
        (Some(value), None) => is_acceptable(value.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        request.headers_mut().remove(HEADER);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
