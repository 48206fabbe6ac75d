//! The runtime secret's JSON shape, parsed into values that cannot be printed.
//!
//! Errors name the offending key and what it should hold, never what it holds.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::auth::keys::{self, ApiKey};

/// What the service takes from the runtime secret. `Debug` is safe: `SecretString` redacts.
#[derive(Debug, Clone, Default)]
pub struct RuntimeSecret {
    /// From `database_url`, or built from the RDS keys.
    pub database_url: Option<SecretString>,
    /// Bearer keys with their ids and scopes (`api_keys`).
    pub api_keys: Vec<ApiKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("SecretBinary is not UTF-8 text")]
    NotUtf8,
    #[error("not valid JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("expected a JSON object at the top level")]
    NotAnObject,
    #[error("key `{key}`: expected {expected}")]
    WrongType {
        key: &'static str,
        expected: &'static str,
    },
    #[error("key `api_keys`, entry {index}: {cause}")]
    ApiKey {
        index: usize,
        cause: keys::EntryError,
    },
    #[error("key `{key}` is missing (the RDS format needs host, username and password)")]
    Missing { key: &'static str },
}

/// Engines whose RDS secrets describe a PostgreSQL server.
const POSTGRES_ENGINES: &[&str] = &["postgres", "postgresql", "aurora-postgresql"];

/// Everything but RFC 3986 unreserved characters is escaped in user, password and database.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Parses the secret's text. Unknown keys are ignored, so one secret can serve other tools.
pub fn parse(text: &str) -> Result<RuntimeSecret, FormatError> {
    let value: Value = serde_json::from_str(text).map_err(|e| FormatError::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(fields) = value else {
        return Err(FormatError::NotAnObject);
    };
    let database_url = match string(&fields, "database_url")? {
        Some(url) => Some(SecretString::from(url.to_owned())),
        None => rds_url(&fields)?,
    };
    Ok(RuntimeSecret {
        database_url,
        api_keys: api_keys(&fields)?,
    })
}

/// `api_keys`: an array whose entries are plain strings (read-and-write keys; blank ones are
/// dropped, as in `API_KEYS`) or objects with `id`, `key` and `scopes`.
fn api_keys(fields: &Map<String, Value>) -> Result<Vec<ApiKey>, FormatError> {
    let items = match fields.get("api_keys") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(FormatError::WrongType {
                key: "api_keys",
                expected: "an array of strings or of {id, key, scopes} objects",
            })
        }
    };
    let mut keys = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match keys::parse_entry(item) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(cause) => return Err(FormatError::ApiKey { index, cause }),
        }
    }
    Ok(keys)
}

/// The RDS format (`engine`, `host`, `port`, `username`, `password`, `dbname`), as RDS and
/// its rotation functions write it. Absent when none of host, username, password is there.
fn rds_url(fields: &Map<String, Value>) -> Result<Option<SecretString>, FormatError> {
    let host = string(fields, "host")?;
    let username = string(fields, "username")?;
    let password = string(fields, "password")?;
    if host.is_none() && username.is_none() && password.is_none() {
        return Ok(None);
    }
    let host = host.ok_or(FormatError::Missing { key: "host" })?;
    let username = username.ok_or(FormatError::Missing { key: "username" })?;
    let password = password.ok_or(FormatError::Missing { key: "password" })?;
    if let Some(engine) = string(fields, "engine")? {
        if !POSTGRES_ENGINES.contains(&engine.to_ascii_lowercase().as_str()) {
            return Err(FormatError::WrongType {
                key: "engine",
                expected: "a PostgreSQL engine (postgres, aurora-postgresql)",
            });
        }
    }
    if host.is_empty() || host.contains(['/', '@', '?', '#', ' ', '[', ']']) {
        return Err(FormatError::WrongType {
            key: "host",
            expected: "a host name or IP address",
        });
    }
    // An IPv6 literal needs brackets in a URL.
    let host = match host.contains(':') {
        true => format!("[{host}]"),
        false => host.to_owned(),
    };
    let port = port(fields)?;
    let dbname = string(fields, "dbname")?.unwrap_or("postgres");
    // RDS presents a certificate of its own CAs, which the binary carries (store::postgres):
    // the connection is encrypted and the server proven to be the host named here.
    let url = format!(
        "postgres://{}:{}@{host}:{port}/{}?sslmode=verify-full",
        utf8_percent_encode(username, URL_COMPONENT),
        utf8_percent_encode(password, URL_COMPONENT),
        utf8_percent_encode(dbname, URL_COMPONENT),
    );
    Ok(Some(SecretString::from(url)))
}

/// `port`: a number (as RDS writes it) or a string of digits; 5432 when absent.
fn port(fields: &Map<String, Value>) -> Result<u16, FormatError> {
    let parsed = match fields.get("port") {
        None | Some(Value::Null) => return Ok(5432),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
        Some(_) => None,
    };
    parsed.filter(|p| *p > 0).ok_or(FormatError::WrongType {
        key: "port",
        expected: "a TCP port number",
    })
}

/// A string field; `null` counts as absent.
fn string<'a>(
    fields: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'a str>, FormatError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(FormatError::WrongType {
            key,
            expected: "a string",
        }),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn url(secret: &RuntimeSecret) -> &str {
        secret
            .database_url
            .as_ref()
            .expect("database url")
            .expose_secret()
    }

    #[test]
    fn rds_format_becomes_an_encoded_postgres_url() {
        let secret = parse(
            r#"{"engine":"postgres","host":"db.example.internal","port":5433,
                "username":"app user","password":"p@ss:w/rd?#%","dbname":"orders"}"#,
        )
        .expect("valid");
        assert_eq!(
            url(&secret),
            "postgres://app%20user:p%40ss%3Aw%2Frd%3F%23%25@db.example.internal:5433/orders\
             ?sslmode=verify-full"
        );
        assert!(secret.api_keys.is_empty());
    }

    #[test]
    fn rds_defaults_port_and_database_and_brackets_ipv6() {
        let secret = parse(r#"{"host":"::1","username":"u","password":"p"}"#).expect("valid");
        assert_eq!(
            url(&secret),
            "postgres://u:p@[::1]:5432/postgres?sslmode=verify-full"
        );
        let secret =
            parse(r#"{"host":"h","port":"6432","username":"u","password":"p"}"#).expect("valid");
        assert_eq!(
            url(&secret),
            "postgres://u:p@h:6432/postgres?sslmode=verify-full"
        );
    }

    #[test]
    fn database_url_wins_and_api_keys_drop_blanks() {
        let secret = parse(
            r#"{"database_url":"postgres://a:b@c/d","host":"ignored","api_keys":["k1"," ","k2"]}"#,
        )
        .expect("valid");
        assert_eq!(url(&secret), "postgres://a:b@c/d");
        assert_eq!(secret.api_keys, [ApiKey::plain("k1"), ApiKey::plain("k2")]);
    }

    #[test]
    fn api_keys_mix_plain_strings_and_keys_with_ids() {
        let secret =
            parse(r#"{"api_keys":["legacy",{"id":"reports","key":"r-1","scopes":["read"]}]}"#)
                .expect("valid");
        assert_eq!(
            secret.api_keys,
            [
                ApiKey::plain("legacy"),
                ApiKey::with_id("reports", "r-1", &[crate::auth::Scope::Read])
            ]
        );
    }

    #[test]
    fn bad_shapes_name_the_key_and_never_the_value() {
        let cases = [
            (
                r#"{"api_keys":"hunter2"}"#,
                "key `api_keys`: expected an array of strings or of {id, key, scopes} objects",
            ),
            (
                r#"{"api_keys":["ok",42]}"#,
                "key `api_keys`, entry 1: an entry is a string or an object with id, key and scopes",
            ),
            (
                r#"{"api_keys":[{"id":"a","key":"hunter2","scopes":["root"]}]}"#,
                "key `api_keys`, entry 0: `scopes` is a non-empty array of \"read\" and \"write\"",
            ),
            (
                r#"{"database_url":1234567}"#,
                "key `database_url`: expected a string",
            ),
            (
                r#"{"host":"h","username":"u","password":"hunter2","port":"x9"}"#,
                "key `port`: expected a TCP port number",
            ),
            (
                r#"{"host":"h","username":"u","password":"hunter2","engine":"mysql"}"#,
                "key `engine`: expected a PostgreSQL engine (postgres, aurora-postgresql)",
            ),
            (
                r#"{"host":"h","password":"hunter2"}"#,
                "key `username` is missing (the RDS format needs host, username and password)",
            ),
            (r#""hunter2""#, "expected a JSON object at the top level"),
            ("hunter2", "not valid JSON (line 1, column 1)"),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text).to_string();
            assert_eq!(error, expected);
            assert!(
                !error.contains("hunter2") && !error.contains("x9") && !error.contains("1234567")
            );
        }
    }

    #[test]
    fn debug_output_redacts_every_value() {
        let secret =
            parse(r#"{"database_url":"postgres://u:hunter2@h/d","api_keys":["k-hunter3"]}"#)
                .expect("valid");
        let debug = format!("{secret:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("hunter3"),
            "{debug}"
        );
    }
}
