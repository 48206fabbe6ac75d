//! `/docs` behind an ALB, through the real `order-service-lambda` binary and a stand-in
//! Runtime API. A Lambda function's whole response to an ALB must stay under 1 MB, headers
//! included, with a compressed (binary) body base64-encoded: every part of the API reference
//! script must fit, in each encoding a client may ask for.

use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha384};
use tokio::sync::mpsc;

use crate::runtime::{serve, start_function, RuntimeApi};

/// The most an ALB accepts from a Lambda function (1 MB), read as the smaller 10^6 bytes.
const ALB_RESPONSE_MAX: usize = 1_000_000;

/// lambda_http's own ALB request fixture, from the crate's source that cargo holds.
fn lambda_http_alb_request() -> Value {
    let output = Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{output:?}");
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata JSON");
    let manifest = metadata["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == "lambda_http"))
        .and_then(|package| package["manifest_path"].as_str())
        .expect("lambda_http among the packages");
    let path = PathBuf::from(manifest).with_file_name("tests/data/alb_request.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The fixture as a GET of `path`, with this `Accept-Encoding` (the fixture sends none).
fn alb_get(fixture: &Value, path: &str, accept_encoding: Option<&str>) -> Value {
    let mut event = fixture.clone();
    event["path"] = Value::from(path);
    event["queryStringParameters"] = serde_json::json!({});
    event["body"] = Value::from("");
    if let Some(accept) = accept_encoding {
        event["headers"]["accept-encoding"] = Value::from(accept);
    }
    event
}

/// Runs the events through the binary, in order; returns each posted response.
async fn invoke_all(events: Vec<Value>) -> Vec<Value> {
    let count = events.len();
    let (answers, mut answered) = mpsc::unbounded_channel();
    let pending = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            (
                format!("docs-{i}"),
                "Root=1-00000000-000000000000000000000000".to_owned(),
                event,
            )
        })
        .collect::<VecDeque<_>>();
    let api = RuntimeApi {
        pending: Arc::new(Mutex::new(pending)),
        answers,
    };
    let addr = serve(api).await;
    let function = start_function(&addr.to_string());
    let mut responses = Vec::with_capacity(count);
    for i in 0..count {
        let answer = tokio::time::timeout(Duration::from_secs(30), answered.recv()).await;
        let Ok(Some((request_id, response))) = answer else {
            let output = function.output.lock().expect("log").clone();
            panic!("no answer to docs-{i}; function output: {output:#?}");
        };
        assert_eq!(request_id, format!("docs-{i}"));
        responses.push(response);
    }
    responses
}

fn header<'a>(response: &'a Value, name: &str) -> Option<&'a str> {
    response["headers"][name]
        .as_str()
        .or_else(|| response["multiValueHeaders"][name][0].as_str())
}

/// The response's body as sent, decoded from base64 and from its Content-Encoding.
fn decoded_body(response: &Value) -> Vec<u8> {
    let body = response["body"].as_str().unwrap_or_default();
    let bytes = if response["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64 body")
    } else {
        body.as_bytes().to_vec()
    };
    let mut decoded = Vec::new();
    match header(response, "content-encoding") {
        Some("br") => {
            brotli::Decompressor::new(&bytes[..], 4096)
                .read_to_end(&mut decoded)
                .expect("brotli body");
        }
        Some("gzip") => {
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut decoded)
                .expect("gzip body");
        }
        None => decoded = bytes,
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
    decoded
}

fn sri(bytes: &[u8]) -> String {
    let digest = Sha384::digest(bytes);
    format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_part_of_the_docs_script_fits_an_alb_response_in_every_encoding() {
    const CHROME: &str = "gzip, deflate, br, zstd";
    let fixture = lambda_http_alb_request();
    let page = invoke_all(vec![alb_get(&fixture, "/docs", Some(CHROME))])
        .await
        .remove(0);
    assert_eq!(page["statusCode"], 200, "{page}");
    let html = String::from_utf8(decoded_body(&page)).expect("the page is UTF-8");
    let parts = html
        .split("data-parts='")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("the page names no script parts: {html}"));
    let parts: Vec<(String, String)> = serde_json::from_str(parts).expect("parts as JSON");

    // Each part as a browser over HTTPS asks (brotli, as stored), as one over plain HTTP asks
    // (no brotli: decoded, then gzipped by the router's compression layer), and for a client
    // that accepts no encoding.
    let encodings = [
        (Some(CHROME), Some("br")),
        (Some("gzip, deflate"), Some("gzip")),
        (None, None),
    ];
    let events = parts
        .iter()
        .flat_map(|(src, _)| {
            encodings.map(|(accept, _)| alb_get(&fixture, &format!("/{src}"), accept))
        })
        .collect();
    let responses = invoke_all(events).await;

    let mut script = Vec::new();
    let mut largest = 0;
    for (i, response) in responses.iter().enumerate() {
        let (src, integrity) = &parts[i / encodings.len()];
        let (accept, encoding) = encodings[i % encodings.len()];
        let what = format!("{src} with Accept-Encoding {accept:?}");
        assert_eq!(response["statusCode"], 200, "{what}");
        assert_eq!(header(response, "content-encoding"), encoding, "{what}");
        assert_eq!(header(response, "vary"), Some("accept-encoding"), "{what}");
        // What the function hands Lambda, which the ALB takes whole or not at all.
        let size = response.to_string().len();
        assert!(size < ALB_RESPONSE_MAX, "{what}: {size} bytes");
        largest = largest.max(size);
        let body = decoded_body(response);
        assert_eq!(sri(&body), *integrity, "{what}");
        if encoding == Some("br") {
            script.extend(body);
        }
    }
    assert_eq!(
        Some(sri(&script).as_str()),
        order_service::routes::docs::scalar_pin("script_integrity"),
        "the joined parts are the pinned script"
    );
    println!(
        "{} parts; the largest ALB response {largest} bytes",
        parts.len()
    );
}
