//! The migrate function of a preview: the same binary and zip as the serving function, run
//! with the handler `migrate` (Lambda passes the configured handler as `_HANDLER`). Each
//! invocation migrates the configured schema from inside the VPC, where the database is, and
//! answers what it did; a failure is the invocation's error, which `aws lambda invoke`
//! reports as a function error.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use order_service::error::error_chain;
use order_service::Config;
use serde_json::{json, Value};

/// The handler name that selects this mode.
pub const HANDLER: &str = "migrate";

/// Whether Lambda started this process as the migrate function.
pub fn selected() -> bool {
    std::env::var("_HANDLER").is_ok_and(|handler| handler == HANDLER)
}

/// Serves invocations until Lambda retires the sandbox; each one migrates the schema.
pub async fn run(config: Config) -> Result<(), Error> {
    let config = &config;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        migrate(config).await
    }))
    .await
}

async fn migrate(config: &Config) -> Result<Value, Error> {
    let schema = &config.database.schema;
    let (before, after) = order_service::state::migrate(config)
        .await
        .map_err(|error| format!("schema {schema} not migrated: {}", error_chain(&error)))?;
    Ok(json!({ "schema": schema, "from_version": before, "to_version": after }))
}
