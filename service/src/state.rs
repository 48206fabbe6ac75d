//! `AppState`, the one value every handler shares, and `build_state`, which assembles it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aws_config::SdkConfig;
use axum::extract::FromRef;
use chrono::Utc;
use secrecy::SecretString;

use crate::admission::Admission;
use crate::auth::WriteAuth;
use crate::config::{Config, StoreKind};
use crate::metrics::{Metrics, MetricsError, Target};
use crate::secrets::{self, RefreshMode, SecretsError, SecretsLoader, StartupRetry};
use crate::store::{
    sample_orders, CredentialRefresher, MemoryStore, OrderStore, PostgresError, PostgresStore,
    StoreError, KEY_EXPIRY_INTERVAL,
};

/// The one state every handler shares: a single `Arc`, so cloning it per request costs one
/// counter. A handler or middleware that needs only a part takes that part (`State<Arc<Metrics>>`,
/// or an extractor bounded on `FromRef`), so no module below this one imports the state.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

#[derive(Clone)]
pub struct AppParts {
    pub config: Arc<Config>,
    pub store: Arc<dyn OrderStore>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<WriteAuth>,
    pub readiness: Arc<Readiness>,
    /// Which API requests are served now and which are refused.
    pub admission: Arc<Admission>,
    /// The runtime secret, when `SECRETS_MANAGER_ENABLED=true`.
    pub secrets: Option<Arc<SecretsLoader>>,
}

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }

    /// The same state over another store (tests put a failing one in).
    pub fn with_store(&self, store: Arc<dyn OrderStore>) -> Self {
        let mut parts = (*self.0).clone();
        parts.store = store;
        Self::new(parts)
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.metrics)
    }
}

impl FromRef<AppState> for Arc<WriteAuth> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.auth)
    }
}

impl FromRef<AppState> for Arc<dyn OrderStore> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.store)
    }
}

impl FromRef<AppState> for Arc<Config> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.config)
    }
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
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// `StoreError`'s own text is generic; its cause is what start-up must show.
    #[error("cannot seed sample data: {}", crate::error::error_chain(.0))]
    Seed(StoreError),
    #[error("STORE=postgres needs DATABASE_URL or a database connection in the runtime secret")]
    DatabaseUrlMissing,
    #[error(transparent)]
    Postgres(#[from] PostgresError),
}

/// DATABASE_URL wins; a URL from the runtime secret comes with the loader, which re-reads it
/// when the database rejects it.
fn database_url(
    config: &Config,
    secrets: Option<&Arc<SecretsLoader>>,
) -> Result<(SecretString, Option<Arc<dyn CredentialRefresher>>), StartupError> {
    match (&config.database.url, secrets) {
        (Some(url), _) => Ok((url.clone(), None)),
        (None, Some(loader)) => Ok((
            loader
                .database_url()
                .ok_or(StartupError::DatabaseUrlMissing)?,
            Some(Arc::clone(loader) as Arc<dyn CredentialRefresher>),
        )),
        (None, None) => Err(StartupError::DatabaseUrlMissing),
    }
}

/// `order-service migrate`: creates `DB_SCHEMA` when missing and applies the embedded
/// migrations not applied yet, with the database URL the service itself would use
/// (`DATABASE_URL`, else the runtime secret). Answers the schema version before and after.
pub async fn migrate(config: &Config) -> Result<(i64, i64), StartupError> {
    let secrets = match &config.secrets {
        Some(secrets_config) => {
            let aws = secrets::aws_config_from_env(secrets_config).await;
            // One fetch, no refresh task: the command ends long before a refresh is due.
            let loader = SecretsLoader::start(
                secrets::client(&aws),
                secrets_config,
                RefreshMode::OnRequest,
                Arc::new(Metrics::new(Target::Container)?),
                StartupRetry::default(),
            )
            .await?;
            Some(loader)
        }
        None => None,
    };
    let (url, _) = database_url(config, secrets.as_ref())?;
    Ok(PostgresStore::migrate(&config.database, &url).await?)
}

/// Builds the state both shells serve: metrics, write auth, runtime secret, store (seeded
/// when asked).
pub async fn build_state(config: Config, target: Target) -> Result<AppState, StartupError> {
    build_state_with_aws(config, target, None).await
}

/// [`build_state`] with the AWS settings given rather than read from the environment, so
/// tests can point Secrets Manager at an emulator.
pub async fn build_state_with_aws(
    config: Config,
    target: Target,
    aws: Option<SdkConfig>,
) -> Result<AppState, StartupError> {
    let metrics = Arc::new(Metrics::new(target)?);
    // The secret comes first: it may hold the database URL and feeds `auth`.
    let secrets = match &config.secrets {
        Some(secrets_config) => {
            let aws = match aws {
                Some(aws) => aws,
                None => secrets::aws_config_from_env(secrets_config).await,
            };
            let loader = SecretsLoader::start(
                secrets::client(&aws),
                secrets_config,
                RefreshMode::for_target(target),
                Arc::clone(&metrics),
                StartupRetry::for_target(target),
            )
            .await?;
            Some(loader)
        }
        None => None,
    };
    // API keys: `API_KEYS`, and the runtime secret's as each refresh publishes them.
    let mut auth = WriteAuth::new(config.api_keys.clone(), config.is_local())
        .with_public_reads(config.public_reads);
    if let Some(loader) = &secrets {
        auth = auth.with_secret_keys(loader.api_keys());
    }
    let auth = Arc::new(auth);
    let store: Arc<dyn OrderStore> = match config.store {
        StoreKind::Memory => Arc::new(
            MemoryStore::new()
                .with_max_orders(config.memory_max_orders)
                .with_idempotency_ttl(config.idempotency_ttl),
        ),
        StoreKind::Postgres => {
            let (url, refresher) = database_url(&config, secrets.as_ref())?;
            let follows_secret = refresher.is_some();
            let mut store = PostgresStore::connect(&config.database, url, refresher)
                .await?
                .with_idempotency_ttl(config.idempotency_ttl)
                .with_key_expiry(KEY_EXPIRY_INTERVAL);
            if let (true, Some(loader)) = (follows_secret, &secrets) {
                store = store.with_url_updates(loader.database_urls());
            }
            Arc::new(store)
        }
    };
    if config.seed_sample_data {
        store
            .seed(sample_orders(Utc::now()))
            .await
            .map_err(StartupError::Seed)?;
    }
    let admission = Admission::new(
        config.connections.max_in_flight,
        config.connections.adaptive_concurrency,
        config.connections.max_queue_wait,
        metrics.registry(),
    )?;
    Ok(AppState::new(AppParts {
        admission,
        config: Arc::new(config),
        store,
        metrics,
        auth,
        readiness: Arc::new(Readiness::default()),
        secrets,
    }))
}
