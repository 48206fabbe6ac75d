//! Container shell: config → telemetry → state → router → serve.
//! Subcommands: `healthcheck` (for images without curl) and `check-config`.

use std::process::ExitCode;

use order_service::{build_state, server, telemetry, Config, Target};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let result = match std::env::args().nth(1).as_deref() {
        None | Some("serve") => run(config).await,
        Some("healthcheck") => server::healthcheck(config.port).await.map_err(Into::into),
        Some("check-config") => {
            println!("config ok");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!(
            "unknown command {other:?}; expected serve, healthcheck or check-config"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("order-service: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let _logs = telemetry::init_container(config.log_level, config.log_format);
    let state = build_state(config, Target::Container).await?;
    server::serve(state).await?;
    Ok(())
}
