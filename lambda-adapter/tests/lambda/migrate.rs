//! The real `order-service-lambda` binary as a preview's migrate function (handler `migrate`)
//! against a real PostgreSQL, through a local Lambda Runtime API: what `aws lambda invoke`
//! from the deploy would get back, and what the database holds afterwards.

use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::postgres::TestDb;
use crate::runtime::{serve, RuntimeApi};

const SCHEMA: &str = "preview_pr_7";

struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary with the environment infra/preview gives the migrate function (and the
/// database URL its secret would hold), and answers the result of each invocation.
async fn invoke_migrate(database_url: &str, invocations: usize) -> Vec<Value> {
    let (answers, mut answered) = mpsc::unbounded_channel();
    let pending = (0..invocations)
        .map(|i| (format!("migrate-{i}"), String::new(), json!({})))
        .collect::<VecDeque<_>>();
    let api = RuntimeApi {
        pending: Arc::new(Mutex::new(pending)),
        answers,
    };
    let addr = serve(api).await;
    let _function = Function(
        Command::new(env!("CARGO_BIN_EXE_order-service-lambda"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env(
                "AWS_LAMBDA_FUNCTION_NAME",
                "order-service-preview-pr-7-migrate",
            )
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("_HANDLER", "migrate")
            .env("ENVIRONMENT", "preview-7")
            .env("STORE", "postgres")
            .env("DB_SCHEMA", SCHEMA)
            .env("SECRETS_MANAGER_ENABLED", "false")
            .env("ENABLE_METRICS", "false")
            .env("DATABASE_URL", database_url)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("function starts"),
    );
    let mut results = Vec::new();
    for _ in 0..invocations {
        let answer = tokio::time::timeout(Duration::from_secs(60), answered.recv()).await;
        let Ok(Some((_, result))) = answer else {
            panic!("the migrate function answered {results:?} and then nothing within 60 s");
        };
        results.push(result);
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrate_handler_migrates_the_schema_and_a_second_call_applies_nothing() {
    let db = TestDb::new().await;
    let tables = format!(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = '{SCHEMA}' AND table_name = 'orders'"
    );
    assert!(db.column(&tables).await.is_empty());

    let results = invoke_migrate(&db.url(), 2).await;

    let (first, second) = (&results[0], &results[1]);
    assert_eq!(first["schema"], SCHEMA, "{first}");
    assert_eq!(first["from_version"], 0, "{first}");
    assert!(first["to_version"].as_i64() > Some(0), "{first}");
    assert_eq!(second["from_version"], first["to_version"], "{second}");
    assert_eq!(second["to_version"], first["to_version"], "{second}");
    assert_eq!(db.column(&tables).await, ["orders"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migration_is_the_invocations_error_naming_the_schema() {
    let db = TestDb::new().await;
    let wrong_password = db.cluster.url_as("postgres", "not-the-password", &db.name);

    let results = invoke_migrate(&wrong_password, 1).await;

    let message = results[0]["error"]["errorMessage"]
        .as_str()
        .unwrap_or_else(|| panic!("not a function error: {}", results[0]));
    assert!(
        message.starts_with(&format!("schema {SCHEMA} not migrated: ")),
        "{message}"
    );
    assert!(message.contains("password"), "{message}");
}
