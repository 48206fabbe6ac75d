//! Configuration through the real binary (`check-config`): what an operator sees when a
//! setting is unusable.

use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output};

use axum::http::{Method, StatusCode};
use order_service::{build_state, router, Config, Target};

use crate::support::{new_order, request, send};

fn check_config(dir: &std::path::Path, vars: &[(&str, &std::ffi::OsStr)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_order-service"))
        .arg("check-config")
        .current_dir(dir)
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .expect("binary runs")
}

/// One line naming the problem, exit status 2, and never the text of the line.
fn assert_one_line_naming(output: &Output, name: &str) -> String {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(name), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn a_malformed_env_file_is_reported_without_its_content() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join(".env"),
        "LOG_LEVEL=info\nDATABASE_URL=\"postgres://app:hunter2-secret@db/orders\nPORT=8000\n",
    )
    .expect("write .env");
    let output = check_config(dir.path(), &[]);
    let stderr = assert_one_line_naming(&output, ".env");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!stderr.contains("DATABASE_URL"), "{stderr}");
    // A good file is read.
    std::fs::write(dir.path().join(".env"), "PORT=eighty\n").expect("write .env");
    assert_one_line_naming(&check_config(dir.path(), &[]), "PORT");
}

#[test]
fn a_variable_that_is_not_utf8_is_a_clean_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = std::ffi::OsStr::from_bytes(b"order-service/\xff\xfe");
    let output = check_config(
        dir.path(),
        &[
            ("SECRETS_MANAGER_ENABLED", "true".as_ref()),
            ("AWS_SECRET_NAME", bad),
        ],
    );
    assert_one_line_naming(&output, "AWS_SECRET_NAME");
    // One the service does not read is no reason to stop.
    let output = check_config(dir.path(), &[("SOMETHING_ELSE", bad)]);
    assert!(output.status.success(), "{output:?}");
}

/// A deployment that forgot `ENVIRONMENT` (and has no key) must not take anonymous writes.
#[tokio::test]
async fn without_environment_writes_stay_closed() {
    let config = Config::from_vars(&Default::default()).expect("valid");
    let app = router(build_state(config, Target::Container).await.expect("state"));
    let body = new_order("Nobody");
    let reply = send(&app, request(Method::POST, "/orders", &[], Some(&body))).await;
    reply.problem(StatusCode::UNAUTHORIZED);
}
