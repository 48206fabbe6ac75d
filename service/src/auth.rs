//! Write authorisation: bearer API keys, compared in constant time.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::error::ApiError;

/// The keys that may write. Static keys come from `API_KEYS`; the runtime secret's keys are
/// read from what the secrets loader publishes on each refresh, so rotation needs no restart.
pub struct WriteAuth {
    static_keys: Vec<SecretString>,
    secret_keys: watch::Receiver<Arc<[SecretString]>>,
    /// With no key configured at all, writes are open (only for `ENVIRONMENT=local`).
    open_without_keys: bool,
}

impl WriteAuth {
    pub fn new(static_keys: Vec<SecretString>, open_without_keys: bool) -> Self {
        Self {
            static_keys,
            // No secret: a channel that stays empty.
            secret_keys: watch::channel(Arc::from(Vec::new())).1,
            open_without_keys,
        }
    }

    /// Also accepts the keys published on `keys` (the runtime secret's), as they change.
    pub fn with_secret_keys(mut self, keys: watch::Receiver<Arc<[SecretString]>>) -> Self {
        self.secret_keys = keys;
        self
    }

    fn secret_keys(&self) -> Arc<[SecretString]> {
        Arc::clone(&self.secret_keys.borrow())
    }

    /// Accepts `Authorization: Bearer <key>` matching any configured key, and names the
    /// credential the request wrote with.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<WriteAccess, ApiError> {
        let secret_keys = self.secret_keys();
        if self.static_keys.is_empty() && secret_keys.is_empty() {
            return match self.open_without_keys {
                true => Ok(WriteAccess {
                    credential: OPEN_WRITES.to_owned(),
                }),
                false => Err(ApiError::Unauthorized),
            };
        }
        let presented = authorization
            .and_then(|value| strip_bearer(value))
            .ok_or(ApiError::Unauthorized)?;
        // Compare against every key, without stopping at the first match, so timing does
        // not reveal which key (or how much of one) matched.
        let mut matched = subtle::Choice::from(0);
        for key in self.static_keys.iter().chain(secret_keys.iter()) {
            matched |= key.expose_secret().as_bytes().ct_eq(presented);
        }
        match bool::from(matched) {
            true => Ok(WriteAccess {
                credential: credential_id(presented),
            }),
            false => Err(ApiError::Unauthorized),
        }
    }
}

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

/// The credential of requests admitted without a key (`ENVIRONMENT=local`, no key set).
const OPEN_WRITES: &str = "open";

/// A stable, non-reversible name for a key: what idempotency keys are scoped by. Never the
/// key itself, which must not be stored.
fn credential_id(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("key:{hex}")
}

/// Extractor that admits a request to a write handler. `credential` names the key it used
/// (a digest), so that what one client writes (idempotency keys) is kept apart from another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteAccess {
    pub credential: String,
}

impl<S> FromRequestParts<S> for WriteAccess
where
    Arc<WriteAuth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let authorization = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
        Arc::<WriteAuth>::from_ref(state).check(authorization)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<SecretString> {
        list.iter()
            .map(|k| SecretString::from(k.to_string()))
            .collect()
    }

    #[test]
    fn bearer_key_must_match_a_configured_key() {
        let auth = WriteAuth::new(keys(&["k1", "k2"]), false);
        assert!(auth.check(Some(b"Bearer k2")).is_ok());
        assert!(auth.check(Some(b"bearer k1")).is_ok());
        assert!(auth.check(Some(b"Bearer k3")).is_err());
        assert!(auth.check(Some(b"Basic k1")).is_err());
        assert!(auth.check(Some(b"Bearer ")).is_err());
        assert!(auth.check(None).is_err());
    }

    #[test]
    fn each_key_is_its_own_credential() {
        let auth = WriteAuth::new(keys(&["k1", "k2"]), false);
        let one = auth.check(Some(b"Bearer k1")).expect("k1");
        let two = auth.check(Some(b"Bearer k2")).expect("k2");
        assert_ne!(one, two);
        assert_eq!(one, auth.check(Some(b"bearer k1")).expect("k1 again"));
        assert!(!one.credential.contains("k1"));
    }

    #[test]
    fn without_keys_only_local_is_open() {
        assert!(WriteAuth::new(vec![], true).check(None).is_ok());
        assert!(WriteAuth::new(vec![], false).check(None).is_err());
    }

    #[test]
    fn rotated_secret_keys_replace_the_old_ones() {
        let (publish, published) = watch::channel(Arc::from(Vec::new()));
        let auth = WriteAuth::new(vec![], true).with_secret_keys(published);
        publish.send_replace(Arc::from(keys(&["old"])));
        assert!(auth.check(Some(b"Bearer old")).is_ok());
        assert!(
            auth.check(None).is_err(),
            "a configured key closes open writes"
        );
        publish.send_replace(Arc::from(keys(&["new"])));
        assert!(auth.check(Some(b"Bearer new")).is_ok());
        assert!(auth.check(Some(b"Bearer old")).is_err());
    }
}
