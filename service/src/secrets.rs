//! The runtime secret from AWS Secrets Manager: fetched at start-up with retries, cached,
//! refreshed in the background (container) or on the first request after the TTL (Lambda,
//! whose process is frozen between invocations), and forced on a database authentication
//! failure (rotation). A failed refresh keeps the last good value.
//!
//! Secret values live in `SecretString`s; logs, errors and metrics carry the secret's name,
//! version id and AWS error codes only.

mod format;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use secrecy::{ExposeSecret, SecretString};

use crate::auth::ApiKey;
use crate::config::SecretsConfig;
use crate::metrics::{Metrics, Target};
use crate::store::CredentialRefresher;

pub use format::{parse, FormatError, RuntimeSecret};

#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretsError {
    /// Secrets Manager could not be asked, or said no; `reason` starts with the AWS error
    /// code when there is one (`ResourceNotFoundException: …`).
    #[error("cannot fetch secret {name}: {reason}")]
    Fetch { name: String, reason: String },
    /// Secrets Manager did not answer in time; retried like any failed fetch.
    #[error("cannot fetch secret {name}: no answer within {} ms (SECRETS_TIMEOUT_MS)", .timeout.as_millis())]
    TimedOut { name: String, timeout: Duration },
    #[error("cannot load secret {name} after {attempts} attempts: {reason}")]
    GaveUp {
        name: String,
        attempts: u32,
        reason: String,
    },
    #[error("secret {name} has neither SecretString nor SecretBinary")]
    Empty { name: String },
    /// The cause is part of the message and deliberately not a `source`: the shells print
    /// the whole chain, which would repeat it.
    #[error("secret {name} is not usable: {cause}")]
    Format { name: String, cause: FormatError },
}

/// How the cached value is kept fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshMode {
    /// A tokio task refreshes every interval (the container).
    Background,
    /// The first request after the interval refreshes before it is served (the Lambda).
    OnRequest,
}

impl RefreshMode {
    pub fn for_target(target: Target) -> Self {
        match target {
            Target::Container => RefreshMode::Background,
            Target::Lambda => RefreshMode::OnRequest,
        }
    }
}

/// Start-up retries: `attempts` fetches, waiting `first_delay` after the first failure and
/// doubling after each; with a `budget`, no attempt starts that could not end (after its wait
/// and `SECRETS_TIMEOUT_MS`) within it. The default gives up after about three seconds when
/// each call fails fast, and after five call timeouts when the endpoint never answers.
#[derive(Debug, Clone, Copy)]
pub struct StartupRetry {
    pub attempts: u32,
    pub first_delay: Duration,
    pub budget: Option<Duration>,
}

impl Default for StartupRetry {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_delay: Duration::from_millis(200),
            budget: None,
        }
    }
}

/// Lambda ends a function's init phase after 10 s; start-up gives up on the secret in time
/// for one clear error line, leaving the rest for the database pool and the runtime client.
pub const LAMBDA_INIT_SECRET_BUDGET: Duration = Duration::from_secs(8);

impl StartupRetry {
    pub fn for_target(target: Target) -> Self {
        match target {
            Target::Container => Self::default(),
            Target::Lambda => Self {
                budget: Some(LAMBDA_INIT_SECRET_BUDGET),
                ..Self::default()
            },
        }
    }
}

/// The HTTP client for AWS calls: rustls with ring, so builds need no aws-lc toolchain.
pub fn http_client() -> aws_sdk_secretsmanager::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// AWS settings from the standard chain: `AWS_PROFILE`, `AWS_ENDPOINT_URL`, web identity
/// (IRSA on EKS), the Lambda execution role, instance metadata.
pub async fn aws_config_from_env(config: &SecretsConfig) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    loader.load().await
}

/// A Secrets Manager client for the given AWS settings.
pub fn client(aws: &SdkConfig) -> Client {
    let config = aws_sdk_secretsmanager::config::Builder::from(aws)
        .http_client(http_client())
        .build();
    Client::from_conf(config)
}

/// The cached runtime secret and what keeps it fresh. It publishes the API keys and the
/// database URL of every successful fetch; the write check and the pool read them.
pub struct SecretsLoader {
    client: Client,
    secret_name: String,
    refresh_interval: Duration,
    call_timeout: Duration,
    mode: RefreshMode,
    metrics: Arc<Metrics>,
    current: RwLock<Option<Arc<RuntimeSecret>>>,
    version: Mutex<Option<String>>,
    last_attempt: Mutex<Option<Instant>>,
    last_outcome: Mutex<Result<(), SecretsError>>,
    /// Finished fetches; lets a caller that waited for a fetch in flight share its outcome.
    fetches: AtomicU64,
    one_fetch_at_a_time: tokio::sync::Mutex<()>,
    /// The database URL of the current secret, published whenever it changes, so a pool can
    /// switch to rotated credentials before any connection is refused.
    database_url: tokio::sync::watch::Sender<Option<SecretString>>,
    /// The current secret's `api_keys`, published on every successful fetch for the write
    /// check to read.
    api_keys: tokio::sync::watch::Sender<Arc<[ApiKey]>>,
}

impl SecretsLoader {
    /// Fetches the secret (retrying per `retry`), applies it, and in background mode starts
    /// the refresh task, which ends when the loader is dropped.
    pub async fn start(
        client: Client,
        config: &SecretsConfig,
        mode: RefreshMode,
        metrics: Arc<Metrics>,
        retry: StartupRetry,
    ) -> Result<Arc<Self>, SecretsError> {
        let loader = Arc::new(Self {
            client,
            secret_name: config.secret_name.clone(),
            refresh_interval: config.refresh_interval,
            call_timeout: config.call_timeout,
            mode,
            metrics,
            current: RwLock::new(None),
            version: Mutex::new(None),
            last_attempt: Mutex::new(None),
            last_outcome: Mutex::new(Ok(())),
            fetches: AtomicU64::new(0),
            one_fetch_at_a_time: tokio::sync::Mutex::new(()),
            database_url: tokio::sync::watch::Sender::new(None),
            api_keys: tokio::sync::watch::Sender::new(Arc::from(Vec::new())),
        });
        let attempts = retry.attempts.max(1);
        let mut delay = retry.first_delay;
        let mut attempt = 1;
        let started = Instant::now();
        // Whether another attempt, after its wait, could still end within the budget.
        let next_fits = |delay: Duration| {
            retry
                .budget
                .is_none_or(|budget| started.elapsed() + delay + loader.call_timeout <= budget)
        };
        loop {
            match loader.refresh().await {
                Ok(()) => break,
                Err(error @ (SecretsError::Fetch { .. } | SecretsError::TimedOut { .. }))
                    if attempt >= attempts || !next_fits(delay) =>
                {
                    let reason = match error {
                        SecretsError::TimedOut { timeout, .. } => format!(
                            "no answer within {} ms (SECRETS_TIMEOUT_MS)",
                            timeout.as_millis()
                        ),
                        SecretsError::Fetch { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    return Err(SecretsError::GaveUp {
                        name: loader.secret_name.clone(),
                        attempts: attempt,
                        reason,
                    });
                }
                Err(SecretsError::Fetch { .. } | SecretsError::TimedOut { .. }) => {}
                // A malformed secret will not fix itself within seconds.
                Err(error) => return Err(error),
            }
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
            attempt += 1;
        }
        if mode == RefreshMode::Background {
            spawn_background_refresh(&loader);
        }
        Ok(loader)
    }

    pub fn secret_name(&self) -> &str {
        &self.secret_name
    }

    /// True once a value was loaded; stays true through failed refreshes (last good value).
    pub fn has_value(&self) -> bool {
        self.current().is_some()
    }

    pub fn database_url(&self) -> Option<SecretString> {
        self.current()
            .and_then(|secret| secret.database_url.clone())
    }

    /// The runtime secret's API keys as they change.
    pub fn api_keys(&self) -> tokio::sync::watch::Receiver<Arc<[ApiKey]>> {
        self.api_keys.subscribe()
    }

    /// The database URL as it changes: the current one, then each new one a refresh loads.
    pub fn database_urls(&self) -> tokio::sync::watch::Receiver<Option<SecretString>> {
        self.database_url.subscribe()
    }

    fn current(&self) -> Option<Arc<RuntimeSecret>> {
        crate::sync::read(&self.current).clone()
    }

    /// Fetches now and applies the result. Concurrent callers share one fetch. On failure
    /// the last good value stays, a warning is logged and the error counter moves.
    pub async fn refresh(&self) -> Result<(), SecretsError> {
        let seen = self.fetches.load(Ordering::SeqCst);
        let _turn = self.one_fetch_at_a_time.lock().await;
        if self.fetches.load(Ordering::SeqCst) != seen {
            return crate::sync::lock(&self.last_outcome).clone();
        }
        *crate::sync::lock(&self.last_attempt) = Some(Instant::now());
        // Bounded: a stalled endpoint must not hold a request (the Lambda refreshes inside
        // one) or the single-flight lock for ever. On timeout the last good value stays.
        let fetched = match tokio::time::timeout(self.call_timeout, self.fetch()).await {
            Ok(fetched) => fetched,
            Err(_) => Err(SecretsError::TimedOut {
                name: self.secret_name.clone(),
                timeout: self.call_timeout,
            }),
        };
        let outcome = fetched.map(|(secret, version)| {
            self.apply(secret, version);
        });
        if let Err(error) = &outcome {
            self.metrics
                .secrets_refresh
                .with_label_values(&["error"])
                .inc();
            tracing::warn!(
                secret = %self.secret_name,
                error = %error,
                keeping_last_good = self.has_value(),
                "runtime secret refresh failed"
            );
        }
        *crate::sync::lock(&self.last_outcome) = outcome.clone();
        self.fetches.fetch_add(1, Ordering::SeqCst);
        outcome
    }

    /// Whether requests refresh the secret when it is stale (the Lambda), rather than a
    /// background task.
    pub fn refreshes_on_request(&self) -> bool {
        self.mode == RefreshMode::OnRequest
    }

    /// In on-request mode, refreshes when the interval has passed since the last attempt.
    pub async fn refresh_if_stale(&self) {
        if self.mode != RefreshMode::OnRequest {
            return;
        }
        let stale = crate::sync::lock(&self.last_attempt)
            .is_none_or(|at| at.elapsed() >= self.refresh_interval);
        if stale {
            // A failure is logged and counted inside; the request goes on with the last value.
            let _ = self.refresh().await;
        }
    }

    async fn fetch(&self) -> Result<(RuntimeSecret, Option<String>), SecretsError> {
        let name = || self.secret_name.clone();
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_name)
            .send()
            .await
            .map_err(|error| SecretsError::Fetch {
                name: name(),
                reason: describe(&error),
            })?;
        let parsed = match (output.secret_string(), output.secret_binary()) {
            (Some(text), _) => format::parse(text),
            (None, Some(blob)) => std::str::from_utf8(blob.as_ref())
                .map_err(|_| FormatError::NotUtf8)
                .and_then(format::parse),
            (None, None) => return Err(SecretsError::Empty { name: name() }),
        };
        let secret = parsed.map_err(|cause| SecretsError::Format {
            name: name(),
            cause,
        })?;
        Ok((secret, output.version_id().map(str::to_owned)))
    }

    fn apply(&self, secret: RuntimeSecret, version: Option<String>) {
        self.api_keys
            .send_replace(Arc::from(secret.api_keys.clone()));
        let api_keys = secret.api_keys.len();
        let has_database_url = secret.database_url.is_some();
        let url = secret.database_url.clone();
        self.database_url.send_if_modified(|published| {
            let changed = published.as_ref().map(ExposeSecret::expose_secret)
                != url.as_ref().map(ExposeSecret::expose_secret);
            if changed {
                *published = url;
            }
            changed
        });
        *crate::sync::write(&self.current) = Some(Arc::new(secret));
        let previous = std::mem::replace(&mut *crate::sync::lock(&self.version), version.clone());
        self.metrics
            .secrets_refresh
            .with_label_values(&["success"])
            .inc();
        self.metrics
            .secrets_last_success
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        let version = version.as_deref().unwrap_or("unknown");
        if previous.as_deref() == Some(version) {
            tracing::debug!(secret = %self.secret_name, version, "runtime secret unchanged");
        } else {
            tracing::info!(
                secret = %self.secret_name,
                version,
                api_keys,
                has_database_url,
                "runtime secret loaded"
            );
        }
    }
}

/// Shows the name, mode and the cached value, whose fields print as `[REDACTED]`.
impl std::fmt::Debug for SecretsLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsLoader")
            .field("secret_name", &self.secret_name)
            .field("mode", &self.mode)
            .field("refresh_interval", &self.refresh_interval)
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

/// The Postgres store calls this when the database rejects its credentials.
#[async_trait]
impl CredentialRefresher for SecretsLoader {
    async fn refresh_database_url(&self) -> Option<SecretString> {
        self.refresh().await.ok()?;
        self.database_url()
    }
}

fn spawn_background_refresh(loader: &Arc<SecretsLoader>) {
    let interval = loader.refresh_interval;
    // A weak handle, so the task ends with the state that owns the loader.
    let loader = Arc::downgrade(loader);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(loader) = loader.upgrade() else {
                return;
            };
            // A failure is logged and counted inside; the next tick tries again.
            let _ = loader.refresh().await;
        }
    });
}

/// One line: the AWS error code and message when the service answered, else the cause chain.
fn describe(error: &SdkError<GetSecretValueError>) -> String {
    let text = match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => crate::error::error_chain(error),
    };
    text.replace(['\r', '\n'], " ")
}
