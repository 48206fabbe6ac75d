//! API keys: who a bearer key is (its id) and what it may do (its scopes).
//!
//! A key is kept only as a tag: SipHash-2-4 with a 128-bit output, keyed by a secret drawn
//! from the OS random source when the process first meets a key, and never written anywhere.
//! A presented key is tagged the same way and compared with each configured tag in constant
//! time. Keyed, SipHash is a pseudorandom function: without the secret, nobody can compute
//! a key's tag, tell from a tag anything about the key, or find another key with the same tag
//! (only guess: one chance in 2^128 per try). Every tag has the same length, and SipHash's
//! work depends on the length of its input alone, so timing says nothing about how much of a
//! key matched. The key itself never sits in memory after parsing. A plain key's id is a
//! prefix of its SHA-256 digest (stable across restarts, unlike the tag), computed once when
//! the key is parsed; a request costs one SipHash (about 300 instructions for a 25-byte key),
//! not a SHA-256 (about 3,500).

use serde_json::{Map, Value};
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use siphasher::sip128::{Hasher128, SipHasher24};

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

/// One accepted key. `Debug` shows the id and scopes, never the tag.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    id: String,
    tag: Tag,
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
        let digest = Sha256::digest(key.as_bytes());
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            id: format!("key:{hex}"),
            tag: tag(key.as_bytes()),
            read: true,
            write: true,
        }
    }

    /// A key with an id: what idempotency keys are scoped by, so a retry that spans a
    /// rotation of the key's value replays rather than creating a second order.
    pub fn with_id(id: &str, key: &str, scopes: &[Scope]) -> Self {
        Self {
            id: format!("id:{id}"),
            tag: tag(key.as_bytes()),
            read: scopes.contains(&Scope::Read),
            write: scopes.contains(&Scope::Write),
        }
    }

    /// The credential's name: `id:<id>`, or `key:<digest prefix>` for a plain key. Never the
    /// key itself, which must not be stored.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn tag(&self) -> &Tag {
        &self.tag
    }

    pub fn allows(&self, scope: Scope) -> bool {
        match scope {
            Scope::Read => self.read,
            Scope::Write => self.write,
        }
    }
}

/// A key's SipHash-2-4 under this process's secret (see the module's comment).
pub type Tag = [u8; 16];

/// The tag of `key`: what a configured key is kept as, and what a presented key is compared by.
pub fn tag(key: &[u8]) -> Tag {
    let mut hasher = SipHasher24::new_with_key(secret());
    hasher.write(key);
    hasher.finish128().as_bytes()
}

/// The secret the tags are keyed with: drawn once per process, held nowhere else.
fn secret() -> &'static [u8; 16] {
    static SECRET: OnceLock<[u8; 16]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0_u8; 16];
        if getrandom::fill(&mut secret).is_err() {
            // No OS random source through getrandom: std's randomly keyed hasher, which seeds
            // itself from the OS by other means, still gives 128 bits nobody outside knows.
            let state = std::collections::hash_map::RandomState::new();
            secret[..8].copy_from_slice(&state.hash_one(0_u8).to_le_bytes());
            secret[8..].copy_from_slice(&state.hash_one(1_u8).to_le_bytes());
        }
        secret
    })
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
        assert_eq!(key.tag(), &tag(b"r-1"));
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
    fn debug_never_shows_the_tag() {
        let debug = format!("{:?}", ApiKey::with_id("a", "k", &[Scope::Read]));
        assert!(debug.contains("id:a") && !debug.contains("tag"), "{debug}");
    }

    #[test]
    fn tags_tell_keys_apart_down_to_the_last_byte() {
        let key = b"perf-key-0123456789abcdef";
        assert_eq!(tag(key), tag(key));
        let mut last = *key;
        last[key.len() - 1] ^= 1;
        let mut first = *key;
        first[0] ^= 0x80;
        for other in [&last[..], &first[..], &key[..key.len() - 1], b"", &[0; 25]] {
            assert_ne!(tag(key), tag(other), "{}", String::from_utf8_lossy(other));
        }
    }

    /// The id of a plain key is the same in every process (it names the credential of
    /// idempotency keys kept in the database): SHA-256, not the per-process tag.
    #[test]
    fn a_plain_keys_id_is_a_prefix_of_its_sha256() {
        assert_eq!(ApiKey::plain("k1").id(), "key:6ab9f1eb8f7d3388f4f9d586");
    }
}
