//! What caused a 5xx, for the access log; never for the client.

/// The internal cause of a 5xx, attached to the response for the access log to record.
/// It never reaches the client.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

impl ErrorCause {
    /// `error` and each of its sources, joined by ": ", with any URL credentials masked (a
    /// driver error may quote a connection string).
    pub fn from_error(error: &dyn std::error::Error) -> Self {
        Self::new(error_chain(error))
    }

    pub fn new(text: impl Into<String>) -> Self {
        Self(redact_url_credentials(&text.into()))
    }
}

/// `error` and each of its sources in one line, joined by ": ".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `scheme://user:password@host` → `scheme://***@host`, wherever it appears.
fn redact_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"')
            .unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                rest = &after[userinfo_end..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use crate::store::StoreError;

    #[test]
    fn causes_keep_their_chain_and_lose_url_credentials() {
        let io = std::io::Error::other("connect to postgres://app:s3cret@db:5432/orders refused");
        let store = StoreError::Unavailable(Box::new(io));
        let cause = ErrorCause::from_error(&ApiError::StoreUnavailable(store)).0;
        assert_eq!(
            cause,
            "the order store is unavailable, retry later: order store unavailable: \
             connect to postgres://***@db:5432/orders refused"
        );
        assert_eq!(
            redact_url_credentials("a http://h/x@y b postgres://u@h c"),
            "a http://h/x@y b postgres://***@h c"
        );
    }
}
