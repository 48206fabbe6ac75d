//! Bearer API keys for reads and writes: which key a request presents (compared as keyed
//! tags in constant time, see [`keys`]), and whether its scopes allow what the request does.

pub mod keys;

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tokio::sync::watch;

use crate::error::{problem, ApiError};

pub use keys::{ApiKey, Scope};

/// The keys that may read and write. Static keys come from `API_KEYS`; the runtime secret's
/// keys are read from what the secrets loader publishes on each refresh, so rotation needs no
/// restart.
pub struct WriteAuth {
    static_keys: Vec<ApiKey>,
    secret_keys: watch::Receiver<Arc<[ApiKey]>>,
    /// With no key configured at all, writes are open (only for `ENVIRONMENT=local`).
    open_without_keys: bool,
    /// `PUBLIC_READS`: reads need no key.
    public_reads: bool,
}

impl WriteAuth {
    pub fn new(static_keys: Vec<SecretString>, open_without_keys: bool) -> Self {
        Self {
            static_keys: static_keys
                .iter()
                .map(|key| ApiKey::plain(key.expose_secret()))
                .collect(),
            // No secret: a channel that stays empty.
            secret_keys: watch::channel(Arc::from(Vec::new())).1,
            open_without_keys,
            public_reads: false,
        }
    }

    /// Reads answer without a key (`PUBLIC_READS=true`, implied by `ENVIRONMENT=local`).
    pub fn with_public_reads(mut self, public_reads: bool) -> Self {
        self.public_reads = public_reads;
        self
    }

    /// Also accepts the keys published on `keys` (the runtime secret's), as they change.
    pub fn with_secret_keys(mut self, keys: watch::Receiver<Arc<[ApiKey]>>) -> Self {
        self.secret_keys = keys;
        self
    }

    fn secret_keys(&self) -> Arc<[ApiKey]> {
        Arc::clone(&self.secret_keys.borrow())
    }

    /// Accepts `Authorization: Bearer <key>` matching a configured key whose scopes allow
    /// `scope`, and names the credential the request used.
    pub fn check(&self, authorization: Option<&[u8]>, scope: Scope) -> Result<Access, Denied> {
        self.admit(authorization, scope, |credential| Access {
            credential: credential.to_owned(),
        })
    }

    /// [`check`](Self::check), answering `name(credential)` instead of an owned name: a read
    /// needs none, and allocates none.
    fn admit<T>(
        &self,
        authorization: Option<&[u8]>,
        scope: Scope,
        name: impl FnOnce(&str) -> T,
    ) -> Result<T, Denied> {
        if scope == Scope::Read && self.public_reads {
            return Ok(name(PUBLIC_READS));
        }
        let secret_keys = self.secret_keys();
        if self.static_keys.is_empty() && secret_keys.is_empty() {
            return match self.open_without_keys {
                true => Ok(name(OPEN_WRITES)),
                false => Err(Denied::Unauthorized),
            };
        }
        let presented = authorization
            .and_then(|value| strip_bearer(value))
            .ok_or(Denied::Unauthorized)?;
        let presented = keys::tag(presented);
        // Tags all have one length; every key is compared, and the match is selected
        // without a branch, so timing reveals neither which key matched nor how much of one.
        let all = || self.static_keys.iter().chain(secret_keys.iter());
        let mut found = subtle::Choice::from(0);
        let mut index = 0_u64;
        for (i, key) in all().enumerate() {
            // As one 128-bit word: one constant-time comparison, not sixteen.
            let matches = u128::from_le_bytes(*key.tag()).ct_eq(&u128::from_le_bytes(presented));
            index = u64::conditional_select(&index, &(i as u64), matches & !found);
            found |= matches;
        }
        let key = match bool::from(found) {
            true => usize::try_from(index).ok().and_then(|i| all().nth(i)),
            false => None,
        }
        .ok_or(Denied::Unauthorized)?;
        match key.allows(scope) {
            true => Ok(name(key.id())),
            false => Err(Denied::Forbidden(scope)),
        }
    }
}

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

/// The credential of writes admitted without a key (`ENVIRONMENT=local`, no key set).
const OPEN_WRITES: &str = "open";

/// The credential of reads admitted by `PUBLIC_READS`.
const PUBLIC_READS: &str = "public";

/// Who a request is: `credential` names the key it used (`id:<id>`, or a digest of a plain
/// key), so that what one client writes (idempotency keys) is kept apart from another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub credential: String,
}

/// Why a request was refused: no valid key (401), or a key without the scope (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Unauthorized,
    Forbidden(Scope),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Unauthorized => ApiError::Unauthorized.into_response(),
            Denied::Forbidden(scope) => problem(
                StatusCode::FORBIDDEN,
                format!("this API key does not have the `{}` scope", scope.as_str()),
                Vec::new(),
            ),
        }
    }
}

/// Extractor that admits a request to a write handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteAccess {
    pub credential: String,
}

impl<S> FromRequestParts<S> for WriteAccess
where
    Arc<WriteAuth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Denied> {
        let authorization = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
        let access = Arc::<WriteAuth>::from_ref(state).check(authorization, Scope::Write)?;
        Ok(Self {
            credential: access.credential,
        })
    }
}

/// Extractor that admits a request to a read handler: orders are customer data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAccess;

impl<S> FromRequestParts<S> for ReadAccess
where
    Arc<WriteAuth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Denied> {
        let authorization = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
        Arc::<WriteAuth>::from_ref(state).admit(authorization, Scope::Read, |_| Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `auth` reading the keys published on the returned sender, as the secrets loader does.
    fn published(auth: WriteAuth) -> (watch::Sender<Arc<[ApiKey]>>, WriteAuth) {
        let (publish, keys) = watch::channel(Arc::from(Vec::new()));
        (publish, auth.with_secret_keys(keys))
    }

    fn keys(list: &[&str]) -> Vec<SecretString> {
        list.iter()
            .map(|k| SecretString::from(k.to_string()))
            .collect()
    }

    #[test]
    fn bearer_key_must_match_a_configured_key() {
        let auth = WriteAuth::new(keys(&["k1", "k2"]), false);
        assert!(auth.check(Some(b"Bearer k2"), Scope::Write).is_ok());
        assert!(auth.check(Some(b"bearer k1"), Scope::Write).is_ok());
        assert!(auth.check(Some(b"Bearer k3"), Scope::Write).is_err());
        assert!(auth.check(Some(b"Basic k1"), Scope::Write).is_err());
        assert!(auth.check(Some(b"Bearer "), Scope::Write).is_err());
        assert!(auth.check(None, Scope::Write).is_err());
    }

    #[test]
    fn each_key_is_its_own_credential() {
        let auth = WriteAuth::new(keys(&["k1", "k2"]), false);
        let one = auth.check(Some(b"Bearer k1"), Scope::Write).expect("k1");
        let two = auth.check(Some(b"Bearer k2"), Scope::Write).expect("k2");
        assert_ne!(one, two);
        assert_eq!(
            one,
            auth.check(Some(b"bearer k1"), Scope::Write)
                .expect("k1 again")
        );
        assert!(!one.credential.contains("k1"));
    }

    #[test]
    fn without_keys_only_local_is_open() {
        assert!(WriteAuth::new(vec![], true)
            .check(None, Scope::Write)
            .is_ok());
        assert!(WriteAuth::new(vec![], false)
            .check(None, Scope::Write)
            .is_err());
    }

    #[test]
    fn rotated_secret_keys_replace_the_old_ones() {
        let (publish, auth) = published(WriteAuth::new(vec![], true));
        publish.send_replace(Arc::from(vec![ApiKey::plain("old")]));
        assert!(auth.check(Some(b"Bearer old"), Scope::Write).is_ok());
        assert!(
            auth.check(None, Scope::Write).is_err(),
            "a configured key closes open writes"
        );
        publish.send_replace(Arc::from(vec![ApiKey::plain("new")]));
        assert!(auth.check(Some(b"Bearer new"), Scope::Write).is_ok());
        assert!(auth.check(Some(b"Bearer old"), Scope::Write).is_err());
    }

    #[test]
    fn scopes_decide_reads_and_writes() {
        let (publish, auth) = published(WriteAuth::new(keys(&["plain"]), false));
        publish.send_replace(Arc::from(vec![
            ApiKey::with_id("reports", "r-key", &[Scope::Read]),
            ApiKey::with_id("importer", "w-key", &[Scope::Write]),
        ]));
        assert!(auth.check(Some(b"Bearer plain"), Scope::Read).is_ok());
        assert!(auth.check(Some(b"Bearer plain"), Scope::Write).is_ok());
        assert!(auth.check(Some(b"Bearer r-key"), Scope::Read).is_ok());
        assert_eq!(
            auth.check(Some(b"Bearer r-key"), Scope::Write),
            Err(Denied::Forbidden(Scope::Write))
        );
        assert_eq!(
            auth.check(Some(b"Bearer w-key"), Scope::Read),
            Err(Denied::Forbidden(Scope::Read))
        );
        assert_eq!(auth.check(None, Scope::Read), Err(Denied::Unauthorized));
        assert_eq!(
            auth.check(Some(b"Bearer r-key-longer"), Scope::Read),
            Err(Denied::Unauthorized)
        );
    }

    #[test]
    fn an_id_names_the_credential_across_a_rotation() {
        let (publish, auth) = published(WriteAuth::new(vec![], false));
        publish.send_replace(Arc::from(vec![ApiKey::with_id(
            "shop",
            "old",
            &[Scope::Write],
        )]));
        let before = auth.check(Some(b"Bearer old"), Scope::Write).expect("old");
        publish.send_replace(Arc::from(vec![ApiKey::with_id(
            "shop",
            "new",
            &[Scope::Write],
        )]));
        let after = auth.check(Some(b"Bearer new"), Scope::Write).expect("new");
        assert_eq!(before, after);
        assert_eq!(after.credential, "id:shop");
    }

    #[test]
    fn a_key_of_the_same_length_or_differing_in_its_last_byte_is_refused() {
        let auth = WriteAuth::new(keys(&["perf-key-0123456789abcdef"]), false);
        assert!(auth
            .check(Some(b"Bearer perf-key-0123456789abcdef"), Scope::Read)
            .is_ok());
        for wrong in [
            &b"Bearer perf-key-0123456789abcdeg"[..],
            b"Bearer perf-key-0123456789abcde",
            b"Bearer perf-key-0123456789abcdef0",
            b"Bearer xxxxxxxxxxxxxxxxxxxxxxxxx",
        ] {
            assert_eq!(
                auth.check(Some(wrong), Scope::Read),
                Err(Denied::Unauthorized),
                "{}",
                String::from_utf8_lossy(wrong)
            );
        }
    }

    #[test]
    fn public_reads_open_reads_only() {
        let auth = WriteAuth::new(keys(&["k"]), false).with_public_reads(true);
        assert!(auth.check(None, Scope::Read).is_ok());
        assert_eq!(auth.check(None, Scope::Write), Err(Denied::Unauthorized));
        let closed = WriteAuth::new(keys(&["k"]), false);
        assert_eq!(closed.check(None, Scope::Read), Err(Denied::Unauthorized));
    }
}
