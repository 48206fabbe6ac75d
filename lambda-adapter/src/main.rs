//! Lambda shell: config → telemetry → state → router → `lambda_http::run`; with the handler
//! `migrate`, the preview's migrate function instead (`migrate.rs`).

use std::process::ExitCode;
use std::sync::Arc;

use order_service::{build_state, telemetry, Config, Target};
use order_service_lambda::{handler, migrate, EmfWriter};

// A Lambda process serves one invocation at a time: one thread is enough and starts faster.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("order-service-lambda: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let mut config = Config::from_env()?;
    telemetry::init_lambda(config.log_level, config.log_format);
    if migrate::selected() {
        // Boxed: the two modes' futures nested in one are too deep for the compiler's layout.
        return Box::pin(migrate::run(config))
            .await
            .map_err(|error| anyhow::anyhow!(error));
    }
    // A page must fit the smallest front door, an ALB, unless PAGE_MAX_BYTES says otherwise.
    config
        .page_max_bytes
        .get_or_insert(order_service::config::LAMBDA_PAGE_MAX_BYTES);
    let state = build_state(config, Target::Lambda).await?;
    let emf = Arc::new(EmfWriter::stdout(&state));
    let on_shutdown = emf.clone();
    // Lambda sends SIGTERM before it retires the sandbox: write what is still uncounted.
    lambda_runtime::spawn_graceful_shutdown_handler(move || async move { on_shutdown.flush() })
        .await;
    // Buffered responses: API Gateway and ALB cannot stream, and the bodies are small JSON.
    lambda_http::run(handler(state, emf))
        .await
        .map_err(|error| anyhow::anyhow!(error))
}
