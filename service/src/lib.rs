//! Order service: one axum router shared by the container binary and the Lambda function.
//!
//! Both shells do the same five steps: [`Config::from_env`] → [`telemetry::init`] →
//! [`build_state`] → [`router`] → run.

pub mod access;
pub mod admission;
pub mod app;
pub mod auth;
pub mod config;
pub mod domain;
pub mod encoding;
pub mod error;
pub mod layers;
pub mod metrics;
pub mod request_id;
pub mod routes;
pub mod routing;
pub mod secrets;
pub mod server;
pub mod state;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod timeout;

pub use admission::App;
pub use app::{metrics_router, router};
pub use config::Config;
pub use error::ApiError;
pub use metrics::Target;
pub use state::{build_state, build_state_with_aws, AppState};
