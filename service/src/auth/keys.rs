//! API keys: who a bearer key is (its id) and what it may do (its scopes).
//!
//! Only a SHA-256 digest of each key is kept: every comparison is then between two values of
//! the same length, done in constant time, and the key itself never sits in memory after
//! parsing.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `GET /orders…`
    Read,
    /// `POST /orders`, `PATCH /orders/{id}`
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

/// One accepted key. `Debug` shows the id and scopes, never the digest.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    id: String,
    digest: [u8; 32],
    read: bool,
    write: bool,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("read", &self.read)
            .field("write", &self.write)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// A plain key (`API_KEYS`, or a string in the secret's `api_keys`): reads and writes,
    /// named by a digest of its value, as every key was before keys had ids.
    pub fn plain(key: &str) -> Self {
        let digest = digest(key.as_bytes());
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            id: format!("key:{hex}"),
            digest,
            read: true,
            write: true,
        }
    }

    /// A key with an id: what idempotency keys are scoped by, so a retry that spans a
    /// rotation of the key's value replays rather than creating a second order.
    pub fn with_id(id: &str, key: &str, scopes: &[Scope]) -> Self {
        Self {
            id: format!("id:{id}"),
            digest: digest(key.as_bytes()),
            read: scopes.contains(&Scope::Read),
            write: scopes.contains(&Scope::Write),
        }
    }

    /// The credential's name: `id:<id>`, or `key:<digest prefix>` for a plain key. Never the
    /// key itself, which must not be stored.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    pub fn allows(&self, scope: Scope) -> bool {
        match scope {
            Scope::Read => self.read,
            Scope::Write => self.write,
        }
    }
}

pub fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// Why an `api_keys` entry was refused; the text names the field, never a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EntryError(pub &'static str);

/// One entry of the secret's `api_keys`: a plain string (read and write; blank ones are
/// skipped, hence `None`) or `{"id": "…", "key": "…", "scopes": ["read", "write"]}`.
pub fn parse_entry(entry: &Value) -> Result<Option<ApiKey>, EntryError> {
    match entry {
        Value::String(key) => Ok(Some(key.trim())
            .filter(|k| !k.is_empty())
            .map(ApiKey::plain)),
        Value::Object(fields) => parse_object(fields).map(Some),
        _ => Err(EntryError(
            "an entry is a string or an object with id, key and scopes",
        )),
    }
}

fn parse_object(fields: &Map<String, Value>) -> Result<ApiKey, EntryError> {
    let id = fields
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| is_valid_id(id))
        .ok_or(EntryError(
            "`id` is 1-64 characters of letters, digits, '.', '_' and '-'",
        ))?;
    let key = fields
        .get("key")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(EntryError("`key` is a non-empty string"))?;
    let wrong_scopes = EntryError("`scopes` is a non-empty array of \"read\" and \"write\"");
    let scopes = fields
        .get("scopes")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
        .ok_or(wrong_scopes)?
        .iter()
        .map(|scope| match scope.as_str() {
            Some("read") => Ok(Scope::Read),
            Some("write") => Ok(Scope::Write),
            _ => Err(wrong_scopes),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ApiKey::with_id(id, key, &scopes))
}

/// Ids appear in idempotency scopes and log lines: a short, plain alphabet.
fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn plain_strings_read_and_write_under_a_digest_name() {
        let key = parse_entry(&json!(" k1 ")).expect("valid").expect("a key");
        assert!(key.allows(Scope::Read) && key.allows(Scope::Write));
        assert_eq!(key, ApiKey::plain("k1"));
        assert!(key.id().starts_with("key:") && !key.id().contains("k1"));
        assert_eq!(parse_entry(&json!("  ")), Ok(None));
    }

    #[test]
    fn objects_carry_id_and_scopes() {
        let key = parse_entry(&json!({"id": "reports", "key": "r-1", "scopes": ["read"]}))
            .expect("valid")
            .expect("a key");
        assert_eq!(key.id(), "id:reports");
        assert!(key.allows(Scope::Read) && !key.allows(Scope::Write));
        assert_eq!(key.digest(), &digest(b"r-1"));
        let rotated = ApiKey::with_id("reports", "r-2", &[Scope::Read]);
        assert_eq!(rotated.id(), key.id(), "the id outlives the key's value");
    }

    #[test]
    fn bad_entries_name_the_field_and_never_the_value() {
        let cases = [
            (json!(42), "an entry is a string"),
            (json!({"key": "hunter2", "scopes": ["read"]}), "`id`"),
            (
                json!({"id": "a b", "key": "hunter2", "scopes": ["read"]}),
                "`id`",
            ),
            (json!({"id": "a", "scopes": ["read"]}), "`key`"),
            (json!({"id": "a", "key": "hunter2"}), "`scopes`"),
            (
                json!({"id": "a", "key": "hunter2", "scopes": []}),
                "`scopes`",
            ),
            (
                json!({"id": "a", "key": "hunter2", "scopes": ["admin"]}),
                "`scopes`",
            ),
        ];
        for (entry, expected) in cases {
            let error = parse_entry(&entry).expect_err("refused").to_string();
            assert!(error.contains(expected), "{entry}: {error}");
            assert!(!error.contains("hunter2"));
        }
    }

    #[test]
    fn debug_never_shows_the_digest() {
        let debug = format!("{:?}", ApiKey::with_id("a", "k", &[Scope::Read]));
        assert!(
            debug.contains("id:a") && !debug.contains("digest"),
            "{debug}"
        );
    }
}
