//! Tracing subscriber: human-readable text on a developer's machine, JSON lines elsewhere.

use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG`, when set, refines `level` per module.
/// Calling it twice is harmless (the second call keeps the first subscriber).
pub fn init(level: tracing::Level, format: LogFormat) {
    let filter = filter(level);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    };
}

/// The Lambda shell's subscriber: like [`init`], but the function's logging configuration
/// (`AWS_LAMBDA_LOG_LEVEL`, `AWS_LAMBDA_LOG_FORMAT`, set by Lambda when the function uses
/// advanced logging controls) wins over the service's own settings. JSON lines list every
/// open span, so each line of an invocation carries the runtime's `requestId`.
pub fn init_lambda(level: tracing::Level, format: LogFormat) {
    let (level, format) = lambda_log_settings(
        level,
        format,
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("AWS_LAMBDA_LOG_FORMAT").ok().as_deref(),
    );
    let filter = filter(level);
    let registry = tracing_subscriber::registry().with(filter);
    // CloudWatch shows escape codes verbatim, so no colours.
    let _ = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_target(false).with_ansi(false))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(true),
            )
            .try_init(),
    };
}

/// Level and format after applying Lambda's logging configuration; unknown values are ignored.
pub fn lambda_log_settings(
    level: tracing::Level,
    format: LogFormat,
    aws_level: Option<&str>,
    aws_format: Option<&str>,
) -> (tracing::Level, LogFormat) {
    let level = match aws_level.map(str::to_ascii_uppercase).as_deref() {
        Some("TRACE") => tracing::Level::TRACE,
        Some("DEBUG") => tracing::Level::DEBUG,
        Some("INFO") => tracing::Level::INFO,
        Some("WARN") => tracing::Level::WARN,
        Some("ERROR" | "FATAL") => tracing::Level::ERROR,
        _ => level,
    };
    let format = match aws_format.map(str::to_ascii_uppercase).as_deref() {
        Some("JSON") => LogFormat::Json,
        Some("TEXT") => LogFormat::Text,
        _ => format,
    };
    (level, format)
}

/// `level` for our code; the AWS SDK and HTTP internals stay at `info` unless `RUST_LOG` asks,
/// so `LOG_LEVEL=debug` shows the service's own detail rather than hundreds of SDK lines.
fn filter(level: tracing::Level) -> EnvFilter {
    let mut filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::from_level(level).into())
        .from_env_lossy();
    if std::env::var_os("RUST_LOG").is_none() && level > tracing::Level::INFO {
        for noisy in [
            "aws_config",
            "aws_smithy_runtime",
            "aws_sdk_secretsmanager",
            "hyper_util",
            "h2",
            "rustls",
            "sqlx",
        ] {
            if let Ok(directive) = format!("{noisy}=info").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn lambda_logging_configuration_wins_when_set() {
        assert_eq!(
            lambda_log_settings(Level::INFO, LogFormat::Text, Some("DEBUG"), Some("JSON")),
            (Level::DEBUG, LogFormat::Json)
        );
        assert_eq!(
            lambda_log_settings(Level::INFO, LogFormat::Json, Some("FATAL"), Some("Text")),
            (Level::ERROR, LogFormat::Text)
        );
    }

    #[test]
    fn service_settings_stay_when_lambda_sets_nothing_usable() {
        assert_eq!(
            lambda_log_settings(Level::WARN, LogFormat::Json, None, None),
            (Level::WARN, LogFormat::Json)
        );
        assert_eq!(
            lambda_log_settings(Level::WARN, LogFormat::Text, Some("loud"), Some("xml")),
            (Level::WARN, LogFormat::Text)
        );
    }
}
