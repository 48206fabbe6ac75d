//! `AppState`, the one value every handler shares, and `build_state`, which assembles it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::Utc;

use crate::auth::WriteAuth;
use crate::config::{Config, StoreKind};
use crate::metrics::{Metrics, MetricsError, Target};
use crate::store::{sample_orders, MemoryStore, OrderStore, StoreError};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn OrderStore>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<WriteAuth>,
    pub readiness: Arc<Readiness>,
}

/// What `/ready` reports beyond the store: draining on shutdown.
#[derive(Debug, Default)]
pub struct Readiness {
    draining: AtomicBool,
}

impl Readiness {
    /// From now on `/ready` answers 503, so load balancers stop sending new requests.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("cannot seed sample data: {0}")]
    Seed(#[source] StoreError),
    #[error("STORE=postgres is not available in this build")]
    StoreUnavailable,
}

/// Builds the state both shells serve: metrics, store (seeded when asked), write auth.
pub async fn build_state(config: Config, target: Target) -> Result<AppState, StartupError> {
    let metrics = Arc::new(Metrics::new(target)?);
    let store: Arc<dyn OrderStore> = match config.store {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Postgres => return Err(StartupError::StoreUnavailable),
    };
    if config.seed_sample_data {
        store
            .seed(sample_orders(Utc::now()))
            .await
            .map_err(StartupError::Seed)?;
    }
    let auth = Arc::new(WriteAuth::new(config.api_keys.clone(), config.is_local()));
    Ok(AppState {
        config: Arc::new(config),
        store,
        metrics,
        auth,
        readiness: Arc::new(Readiness::default()),
    })
}
