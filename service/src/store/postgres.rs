//! The PostgreSQL store: durable, shared by every replica, safe under concurrent writers.
//!
//! Every operation is one SQL statement (one round trip, one implicit transaction), except
//! seeding. Connections come from a pool of sqlx connections (`Pool`, below) that costs no
//! round trip of its own on a busy service. Idempotent creates rely on the key's primary key: of two racing creates with the
//! same key, the second waits for the first to commit, fails with a unique violation, and
//! replays the winner.

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool::managed::{self, Metrics, Object, PoolError, QueueMode, RecycleResult, Timeouts};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgRow, PgSeverity, PgSslMode};
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::watch;

use super::{
    to_micros, Created, CredentialRefresher, Cursor, DatabaseConfig, Idempotency, OrderStore, Page,
    PageRequest, Position, StatusChange, StoreError, DEFAULT_IDEMPOTENCY_TTL,
};
use crate::domain::{Money, NewOrder, Order, OrderId, OrderItem, OrderStatus};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Serialises `migrate` runs (schema creation and migrations) against one database; any
/// constant shared by every build of this service works.
const MIGRATION_LOCK_ID: i64 = 0x6f72_6465_7273; // "orders"

/// How often a `migrate` run asks again for the lock another run holds.
const MIGRATION_LOCK_POLL: Duration = Duration::from_millis(200);

/// A pooled connection idle this long is pinged before use: it may have outlived a database
/// restart. A busy pool hands out connections used moments ago, without a ping.
const STALE_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A connection this old is closed instead of reused, so connections follow a failover or a
/// new credential within this time, and no server process grows for ever (sqlx's default).
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Connections idle this long are closed, so a quiet replica does not hold a full pool on
/// the database (sqlx's default); checked every `IDLE_CHECK`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const IDLE_CHECK: Duration = Duration::from_secs(60);

/// A credential refresh is not retried sooner than this, so a wrong password does not turn
/// every request into a Secrets Manager call.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Each message carries its cause, which is therefore not also a `source`: the shells print
/// the whole chain, and it would appear twice.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("DB_SCHEMA {0:?} is not a lowercase SQL identifier")]
    InvalidSchema(String),
    /// The message of a URL parse error never contains the URL itself.
    #[error("the database URL is not a valid PostgreSQL URL: {0}")]
    InvalidUrl(sqlx::Error),
    #[error("cannot reach the database: {0}")]
    Connect(sqlx::Error),
    #[error("cannot set up the database connection pool: {0}")]
    Pool(managed::BuildError),
    #[error("cannot create schema {schema}: {cause}")]
    CreateSchema { schema: String, cause: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(MigrateError),
    #[error("cannot read the schema version of {schema}: {cause}")]
    SchemaVersion { schema: String, cause: sqlx::Error },
    #[error(
        "database schema {schema} is at version {found}, this build needs version {needed}: \
         run `order-service migrate` first"
    )]
    SchemaTooOld {
        schema: String,
        found: i64,
        needed: i64,
    },
}

impl From<MigrateError> for PostgresError {
    fn from(error: MigrateError) -> Self {
        PostgresError::Migrate(error)
    }
}

/// The newest migration embedded in this build: the schema version it needs. A newer schema
/// is served too, since every migration keeps the previous release working.
pub fn required_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The newest migration applied in `schema`, 0 when none is (no migration table yet).
async fn schema_version(conn: &mut PgConnection, schema: &str) -> Result<i64, PostgresError> {
    let error = |cause| PostgresError::SchemaVersion {
        schema: schema.to_owned(),
        cause,
    };
    let has_table: bool = sqlx::query_scalar(
        "SELECT to_regclass(quote_ident($1) || '._sqlx_migrations') IS NOT NULL",
    )
    .bind(schema)
    .fetch_one(&mut *conn)
    .await
    .map_err(error)?;
    if !has_table {
        return Ok(0);
    }
    sqlx::query_scalar("SELECT COALESCE(max(version), 0) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut *conn)
        .await
        .map_err(error)
}

pub struct PostgresStore {
    pool: Pool,
    schema: String,
    statement_timeout: Duration,
    connect_timeout: Duration,
    ca_bundle: Option<Arc<[u8]>>,
    rotation: Option<Rotation>,
    idempotency_ttl: Duration,
    key_expiry: Option<AbortOnDrop>,
    url_updates: Option<AbortOnDrop>,
    /// Runs for as long as the store does.
    _close_idle: AbortOnDrop,
}

/// A background task of the store (key expiry, URL updates, idle connections); stopped with
/// the store.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The connection pool: sqlx connections in deadpool's pool. sqlx's own pool pings every
/// connection as it is returned, a round trip per request that no setting turns off (sqlx
/// 0.8), and its one acquire timeout covers both waiting for a busy connection and opening a
/// new one. Here a returned connection costs nothing unless its operation was cut short, and
/// the two waits have timeouts of their own (`Timeouts::wait` and `create`).
type Pool = managed::Pool<Connector, Lease>;

/// Opens connections with the current connect options, and decides, when an idle connection
/// is taken again, whether it serves as it is.
pub struct Connector {
    /// Replaced when the database URL changes; connections opened before keep theirs.
    options: RwLock<PgConnectOptions>,
}

impl Connector {
    fn set_options(&self, options: PgConnectOptions) {
        *self.options.write().unwrap_or_else(PoisonError::into_inner) = options;
    }
}

/// A pooled connection, and whether the last operation on it may have been cut short.
pub struct PooledConnection {
    raw: PgConnection,
    /// Set while the connection is lent, cleared when the operation's statements were
    /// answered. Still set when it comes back, the request was cancelled (its timeout) or
    /// failed between two messages: the next borrower pings first, which reads to the end of
    /// whatever the interrupted statement left, or drops the connection when that fails.
    /// Either way no borrower reads another's answer.
    interrupted: bool,
}

impl managed::Manager for Connector {
    type Type = PooledConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PooledConnection, sqlx::Error> {
        let options = self
            .options
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok(PooledConnection {
            raw: PgConnection::connect_with(&options).await?,
            interrupted: false,
        })
    }

    async fn recycle(
        &self,
        conn: &mut PooledConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        if metrics.age() >= MAX_LIFETIME {
            return Err(managed::RecycleError::message("past its maximum lifetime"));
        }
        if conn.interrupted || metrics.last_used() >= STALE_AFTER_IDLE {
            conn.raw.ping().await?;
            conn.interrupted = false;
        }
        Ok(())
    }
}

/// A connection lent to one store operation; it counts as interrupted until `finish`.
pub struct Lease(Object<Connector>);

impl From<Object<Connector>> for Lease {
    fn from(mut conn: Object<Connector>) -> Self {
        conn.interrupted = true;
        Lease(conn)
    }
}

impl Lease {
    /// Ends the operation with the result of its last statement. A statement answered in
    /// full, with rows or with an error that ends only the statement (a constraint, a
    /// statement timeout), leaves the connection ready for the next borrower. Anything else
    /// leaves it marked: an I/O error, and an error that ends the session (severity FATAL,
    /// as every session gets when the server shuts down), after which the connection is dead.
    fn finish<T>(self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        let settled = match &result {
            Ok(_) => true,
            Err(sqlx::Error::Database(error)) => error
                .try_downcast_ref::<PgDatabaseError>()
                .is_some_and(|error| error.severity() == PgSeverity::Error),
            Err(_) => false,
        };
        if settled {
            self.done();
        }
        result
    }

    /// Ends an operation whose statements were all answered.
    fn done(mut self) {
        self.0.interrupted = false;
    }
}

impl Deref for Lease {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.0.raw
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.0.raw
    }
}

/// A connection from `pool`, waiting for a busy one at most `wait` (the pool's own target
/// when `None`). Opening a new one has its own timeout, so a pool refilling after an outage
/// is not held to the wait target.
async fn acquire(pool: &Pool, wait: Option<Duration>) -> Result<Lease, StoreError> {
    let mut timeouts = pool.timeouts();
    if wait.is_some() {
        timeouts.wait = wait;
    }
    pool.timeout_get(&timeouts)
        .await
        .map_err(|error| match error {
            PoolError::Backend(error) => classify(error),
            PoolError::Timeout(managed::TimeoutType::Wait) => StoreError::Unavailable(
                "every database connection stayed busy for longer than DB_POOL_WAIT_TIMEOUT_MS"
                    .into(),
            ),
            other => StoreError::Unavailable(Box::new(other)),
        })
}

/// Closes connections idle for `IDLE_TIMEOUT`, now and then, for as long as the pool lives.
fn close_idle_connections(pool: &Pool) -> AbortOnDrop {
    let pool = pool.clone();
    AbortOnDrop(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(IDLE_CHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            pool.retain(|_, metrics| metrics.last_used() < IDLE_TIMEOUT);
        }
    }))
}

/// What an idempotency key says about a create.
enum KeyLookup {
    Absent,
    Expired,
    Live {
        fingerprint: String,
        first: Box<Order>,
    },
}

/// How many expired keys one statement deletes; a short statement, whatever the backlog.
const KEY_EXPIRY_BATCH: i64 = 1000;

/// Deletes every key older than `ttl`, in batches; waits for a connection as long as it
/// takes to open one (a background task has no client to answer in time).
async fn delete_expired_keys(pool: &Pool, ttl: Duration, wait: Duration) -> Result<(), StoreError> {
    loop {
        let mut conn = acquire(pool, Some(wait)).await?;
        let result = sqlx::query(
            "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM idempotency_keys WHERE created_at < now() - $1::interval
                 LIMIT $2 FOR UPDATE SKIP LOCKED))",
        )
        .bind(interval(ttl))
        .bind(KEY_EXPIRY_BATCH)
        .execute(&mut *conn)
        .await;
        let deleted = conn.finish(result).map_err(classify)?.rows_affected();
        if deleted < KEY_EXPIRY_BATCH as u64 {
            return Ok(());
        }
    }
}

/// Where fresh credentials come from when the database rejects the current ones.
struct Rotation {
    refresher: Arc<dyn CredentialRefresher>,
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
}

impl PostgresStore {
    /// Opens the pool and checks that `config.schema` is at a version this build can serve.
    /// Runs no DDL and takes no lock: migrations are a deploy step (`migrate`).
    pub async fn connect(
        config: &DatabaseConfig,
        url: SecretString,
        refresher: Option<Arc<dyn CredentialRefresher>>,
    ) -> Result<Self, PostgresError> {
        if !is_schema_name(&config.schema) {
            return Err(PostgresError::InvalidSchema(config.schema.clone()));
        }
        let connector = Connector {
            options: RwLock::new(connect_options(
                &url,
                &config.schema,
                config.statement_timeout,
                config.ca_bundle.as_deref(),
            )?),
        };
        // Last in, first out: the connections a busy service uses stay warm and the rest go
        // idle (and are closed after IDLE_TIMEOUT), instead of every one of them cooling
        // past STALE_AFTER_IDLE in turn and costing a ping.
        let pool = Pool::builder(connector)
            .max_size(config.max_connections as usize)
            .queue_mode(QueueMode::Lifo)
            .timeouts(Timeouts {
                wait: Some(config.pool_wait_timeout),
                create: Some(config.connect_timeout),
                recycle: Some(config.connect_timeout),
            })
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(PostgresError::Pool)?;
        let store = PostgresStore {
            _close_idle: close_idle_connections(&pool),
            pool,
            schema: config.schema.clone(),
            statement_timeout: config.statement_timeout,
            connect_timeout: config.connect_timeout,
            ca_bundle: config.ca_bundle.clone(),
            rotation: refresher.map(|refresher| Rotation {
                refresher,
                last_attempt: tokio::sync::Mutex::new(None),
            }),
            idempotency_ttl: DEFAULT_IDEMPOTENCY_TTL,
            key_expiry: None,
            url_updates: None,
        };
        let mut conn = store.pool.get().await.map_err(|error| {
            PostgresError::Connect(match error {
                PoolError::Backend(error) => error,
                PoolError::Closed => sqlx::Error::PoolClosed,
                _ => sqlx::Error::PoolTimedOut,
            })
        })?;
        let found = schema_version(&mut conn, &store.schema).await?;
        conn.done();
        let needed = required_schema_version();
        if found < needed {
            return Err(PostgresError::SchemaTooOld {
                schema: store.schema.clone(),
                found,
                needed,
            });
        }
        Ok(store)
    }

    /// Creates `config.schema` when missing and applies the embedded migrations that are not
    /// applied yet; the deploy step (`order-service migrate`), never part of serving. Runs on
    /// one connection of its own, closed afterwards, so the session-level advisory lock that
    /// serialises concurrent runs ends with it even when a migration fails half-way.
    /// Answers the schema's version before and after.
    pub async fn migrate(
        config: &DatabaseConfig,
        url: &SecretString,
    ) -> Result<(i64, i64), PostgresError> {
        if !is_schema_name(&config.schema) {
            return Err(PostgresError::InvalidSchema(config.schema.clone()));
        }
        // No statement timeout: a migration that rewrites a large table, or a run queued
        // behind another, is not the runaway query `statement_timeout` guards against.
        let options = connect_options(
            url,
            &config.schema,
            Duration::ZERO,
            config.ca_bundle.as_deref(),
        )?;
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(PostgresError::Connect)?;
        // CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent twin (it can fail
        // with a unique violation), so runs queue on this lock. sqlx's migrator takes its
        // own lock too, but only after it has created its table in our schema.
        // "already exists, skipping" notices on every run are noise in the logs.
        sqlx::query("SET client_min_messages = warning")
            .execute(&mut conn)
            .await
            .map_err(PostgresError::Connect)?;
        // Polled, not waited for in one statement: a run that waits inside a statement has an
        // open transaction, which a CREATE INDEX CONCURRENTLY of the run holding the lock
        // waits for in turn (a deadlock PostgreSQL resolves by failing one of them).
        while !sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(MIGRATION_LOCK_ID)
            .fetch_one(&mut conn)
            .await
            .map_err(PostgresError::Connect)?
        {
            tokio::time::sleep(MIGRATION_LOCK_POLL).await;
        }
        sqlx::query(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{}\"",
            config.schema
        ))
        .execute(&mut conn)
        .await
        .map_err(|cause| PostgresError::CreateSchema {
            schema: config.schema.clone(),
            cause,
        })?;
        let before = schema_version(&mut conn, &config.schema).await?;
        MIGRATOR.run_direct(&mut conn).await?;
        let after = schema_version(&mut conn, &config.schema).await?;
        // Closing ends the session and with it the advisory lock.
        let _ = conn.close().await;
        Ok((before, after))
    }

    /// How long an idempotency key replays its first response.
    pub fn with_idempotency_ttl(mut self, ttl: Duration) -> Self {
        self.idempotency_ttl = ttl;
        self
    }

    /// A connection from the pool for one operation, waiting for a busy one at most
    /// `DB_POOL_WAIT_TIMEOUT_MS`; also for checks outside the store's operations.
    pub async fn connection(&self) -> Result<Lease, StoreError> {
        acquire(&self.pool, None).await
    }

    /// The same for work that no client waits on, or that must not fail because the service
    /// is busy (readiness): it waits as long as opening a connection may take.
    async fn patient_connection(&self) -> Result<Lease, StoreError> {
        acquire(&self.pool, Some(self.connect_timeout)).await
    }

    /// Points new connections at a rotated URL, when the database rejected the current one.
    async fn refresh_credentials(&self) {
        let Some(rotation) = &self.rotation else {
            return;
        };
        // Another request is refreshing already; one refresh serves them all.
        let Ok(mut last_attempt) = rotation.last_attempt.try_lock() else {
            return;
        };
        if last_attempt.is_some_and(|at| at.elapsed() < MIN_REFRESH_INTERVAL) {
            return;
        }
        *last_attempt = Some(Instant::now());
        tracing::warn!("database rejected the credentials; refreshing the runtime secret");
        let Some(url) = rotation.refresher.refresh_database_url().await else {
            tracing::warn!("the runtime secret provided no database URL");
            return;
        };
        match connect_options(
            &url,
            &self.schema,
            self.statement_timeout,
            self.ca_bundle.as_deref(),
        ) {
            Ok(options) => self.pool.manager().set_options(options),
            Err(error) => tracing::error!(%error, "refreshed database URL is unusable"),
        }
    }

    /// Passes a result through, refreshing credentials first when it is an auth failure.
    async fn checked<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Unavailable(cause)) = &result {
            if cause
                .downcast_ref::<sqlx::Error>()
                .is_some_and(is_auth_failure)
            {
                self.refresh_credentials().await;
            }
        }
        result
    }

    async fn insert(
        &self,
        order: &NewOrder,
        order_date: DateTime<Utc>,
        idempotency: Option<&Idempotency>,
    ) -> Result<i64, StoreError> {
        let items = ItemColumns::of(&order.items).map_err(classify)?;
        let mut conn = self.connection().await?;
        let total = order.total().unwrap_or_default();
        // No lock: creates commit in parallel. The row's created_xid (the column default, the
        // id of this transaction) is what keeps paging exact; see `try_list`.
        let result = sqlx::query_scalar(
            "WITH new_order AS (
                 INSERT INTO orders (customer_name, order_date, total_amount, status, shipping_address)
                 VALUES ($1, $2, $3, 'PENDING', $4)
                 RETURNING seq
             ), new_items AS (
                 INSERT INTO order_items (order_seq, position, product_id, name, quantity, price)
                 SELECT new_order.seq, item.position, item.product_id, item.name, item.quantity, item.price
                 FROM new_order,
                      UNNEST($5::bigint[], $6::text[], $7::int[], $8::numeric[]) WITH ORDINALITY
                          AS item (product_id, name, quantity, price, position)
             ), new_key AS (
                 INSERT INTO idempotency_keys (scope, key, fingerprint, order_seq)
                 SELECT $11, $9, $10, new_order.seq FROM new_order WHERE $9::text IS NOT NULL
             )
             SELECT seq FROM new_order",
        )
        .bind(&order.customer_name)
        .bind(order_date)
        .bind(total.decimal())
        .bind(&order.shipping_address)
        .bind(&items.product_ids)
        .bind(&items.names)
        .bind(&items.quantities)
        .bind(&items.prices)
        .bind(idempotency.map(|i| &i.key))
        .bind(idempotency.map(|i| &i.fingerprint))
        .bind(idempotency.map(|i| &i.scope))
        .fetch_one(&mut *conn)
        .await;
        conn.finish(result).map_err(classify)
    }

    /// A create with an idempotency key. A retry with a known key is a read and nothing
    /// else: no insert is attempted, so no id is drawn. Each decision is taken on one row read
    /// once, so a key that expires meanwhile can only turn a replay into a new order, never
    /// into an error.
    async fn create_keyed(
        &self,
        order: &NewOrder,
        order_date: DateTime<Utc>,
        idempotency: &Idempotency,
    ) -> Result<Created, StoreError> {
        // Another attempt only when a racing request committed the same key in between; it
        // is then found on the next read.
        for _ in 0..3 {
            match self.find_key(idempotency).await? {
                KeyLookup::Live { fingerprint, .. } if fingerprint != idempotency.fingerprint => {
                    return Err(StoreError::IdempotencyMismatch);
                }
                KeyLookup::Live { first, .. } => {
                    return Ok(Created {
                        order: Arc::new(first.as_created()),
                        replayed: true,
                    });
                }
                // Past its time to live but not yet swept: this request takes the key over.
                KeyLookup::Expired => self.forget_expired_key(idempotency).await?,
                KeyLookup::Absent => {}
            }
            match self.insert(order, order_date, Some(idempotency)).await {
                Ok(seq) => {
                    return Ok(Created {
                        order: Arc::new(order.clone().into_order(seq.to_string(), order_date)),
                        replayed: false,
                    })
                }
                Err(error) if is_idempotency_conflict(&error) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Unavailable(
            "the idempotency key changed hands on every attempt".into(),
        ))
    }

    /// The key, whether it is still live, and the order it created, in one read.
    async fn find_key(&self, idempotency: &Idempotency) -> Result<KeyLookup, StoreError> {
        let mut conn = self.connection().await?;
        let result = sqlx::query(FIND_KEY)
            .bind(&idempotency.scope)
            .bind(&idempotency.key)
            .bind(interval(self.idempotency_ttl))
            .fetch_optional(&mut *conn)
            .await;
        let row = conn.finish(result).map_err(classify)?;
        let Some(row) = row else {
            return Ok(KeyLookup::Absent);
        };
        if !row.try_get::<bool, _>("live").map_err(internal)? {
            return Ok(KeyLookup::Expired);
        }
        Ok(KeyLookup::Live {
            fingerprint: row.try_get("fingerprint").map_err(internal)?,
            first: Box::new(order_from_row(&row)?),
        })
    }

    /// Deletes this one key, if it is still expired (a racing request may have taken it
    /// over already).
    async fn forget_expired_key(&self, idempotency: &Idempotency) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let result = sqlx::query(
            "DELETE FROM idempotency_keys
             WHERE scope = $1 AND key = $2 AND created_at < now() - $3::interval",
        )
        .bind(&idempotency.scope)
        .bind(&idempotency.key)
        .bind(interval(self.idempotency_ttl))
        .execute(&mut *conn)
        .await;
        conn.finish(result).map(drop).map_err(classify)
    }

    /// Follows the database URL as the runtime secret changes it: new connections use the
    /// new URL from the moment it is published, so a credential rotation (new password set,
    /// then the secret) costs no request. Open connections stay as they are; PostgreSQL keeps
    /// them when a password changes. The task ends with the store.
    pub fn with_url_updates(mut self, mut urls: watch::Receiver<Option<SecretString>>) -> Self {
        let (pool, schema, timeout, ca_bundle) = (
            self.pool.clone(),
            self.schema.clone(),
            self.statement_timeout,
            self.ca_bundle.clone(),
        );
        urls.mark_unchanged();
        let task = tokio::spawn(async move {
            while urls.changed().await.is_ok() {
                let Some(url) = urls.borrow_and_update().clone() else {
                    continue;
                };
                match connect_options(&url, &schema, timeout, ca_bundle.as_deref()) {
                    Ok(options) => {
                        pool.manager().set_options(options);
                        tracing::info!("database URL changed; new connections use it");
                    }
                    Err(error) => tracing::error!(%error, "the new database URL is unusable"),
                }
            }
        });
        self.url_updates = Some(AbortOnDrop(task));
        self
    }

    /// Deletes expired keys in the background every `every`, in batches, so they neither pile
    /// up nor cost a request anything. Every replica runs it; the batches skip rows another
    /// replica is deleting. The task ends with the store.
    pub fn with_key_expiry(mut self, every: Duration) -> Self {
        let (pool, ttl, wait) = (
            self.pool.clone(),
            self.idempotency_ttl,
            self.connect_timeout,
        );
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = delete_expired_keys(&pool, ttl, wait).await {
                    tracing::warn!(%error, "cannot delete expired idempotency keys");
                }
            }
        });
        self.key_expiry = Some(AbortOnDrop(task));
        self
    }

    async fn fetch(&self, seq: i64) -> Result<Option<Order>, StoreError> {
        let mut conn = self.connection().await?;
        let result = sqlx::query(GET_ORDER)
            .bind(seq)
            .fetch_optional(&mut *conn)
            .await;
        let row = conn.finish(result).map_err(classify)?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// One conditional UPDATE; a read only when it matched nothing, to say why.
    async fn try_set_status(&self, seq: i64, change: &StatusChange) -> Result<Order, StoreError> {
        let from: Vec<&str> = change.from.iter().map(|s| s.as_str()).collect();
        let versions: Option<Vec<i64>> = change.versions.as_ref().map(|versions| {
            versions
                .iter()
                .filter_map(|v| i64::try_from(*v).ok())
                .collect()
        });
        let mut conn = self.connection().await?;
        let result = sqlx::query(SET_STATUS)
            .bind(seq)
            .bind(&from)
            .bind(change.to.as_str())
            .bind(change.tracking_number.as_deref())
            .bind(versions)
            .fetch_optional(&mut *conn)
            .await;
        let row = conn.finish(result).map_err(classify)?;
        if let Some(row) = row {
            return order_from_row(&row);
        }
        match self.fetch(seq).await? {
            None => Err(StoreError::NotFound),
            Some(order) => Err(StoreError::StatusConflict {
                current: Arc::new(order),
            }),
        }
    }

    /// The position just after order `seq` (an id a client kept), or, when there is no such
    /// order, after the last order below it.
    async fn position_of(&self, seq: u64) -> Result<Position, StoreError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let mut conn = self.connection().await?;
        let result: Result<Option<(Option<String>, i64)>, _> = sqlx::query_as(
            "SELECT created_xid::text, seq FROM orders WHERE seq <= $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(seq)
        .fetch_optional(&mut *conn)
        .await;
        match conn.finish(result).map_err(classify)? {
            None => Ok(Position::default()),
            Some((tx, seq)) => Ok(Position {
                tx: parse_tx(tx.as_deref())?,
                seq: u64::try_from(seq).map_err(internal)?,
            }),
        }
    }

    /// A page in (created_xid, seq) order, fenced: only orders whose creating transaction
    /// is older than every transaction running now (`pg_snapshot_xmin`). Every transaction
    /// below the fence has ended, so no order can appear before the fence any more: a
    /// position never passes an order that is still to commit, whatever order creates
    /// commit in. The fence comes from the statement's own snapshot, so every order below it
    /// that committed is visible to this very query.
    async fn try_list(&self, page: PageRequest) -> Result<Page, StoreError> {
        let after = match page.after {
            None => Position::default(),
            Some(Cursor::At(position)) => position,
            Some(Cursor::AfterOrder(seq)) => self.position_of(seq).await?,
        };
        let mut conn = self.connection().await?;
        let result = sqlx::query(LIST_PAGE)
            .bind(after.tx.to_string())
            .bind(i64::try_from(after.seq).unwrap_or(i64::MAX))
            .bind(i64::from(page.limit) + 1)
            .bind(i64::try_from(page.max_bytes).unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await;
        let rows = conn.finish(result).map_err(classify)?;
        let fence: Option<String> = match rows.first() {
            Some(row) => row.try_get("fence").map_err(internal)?,
            None => None,
        };
        let mut orders = Vec::with_capacity(rows.len());
        let mut positions = Vec::with_capacity(rows.len());
        // With no order on the page, the one row carries only the fence.
        for row in &rows {
            let tx: Option<String> = row.try_get("tx").map_err(internal)?;
            if tx.is_none() {
                break;
            }
            let seq: i64 = row.try_get("seq").map_err(internal)?;
            positions.push(Position {
                tx: parse_tx(tx.as_deref())?,
                seq: u64::try_from(seq).map_err(internal)?,
            });
            orders.push(Arc::new(order_from_row(row)?));
        }
        drop(rows);
        // The query left out only orders that cannot fit; the exact cut is made here.
        let fitting = page.fitting(&orders);
        let more = orders.len() > fitting;
        orders.truncate(fitting);
        let last = fitting
            .checked_sub(1)
            .and_then(|last| positions.get(last).copied());
        let resume = match (more, last) {
            (true, Some(last)) => last,
            // Everything below the fence after `after` is on this page.
            _ => after.max(Position {
                tx: parse_tx(fence.as_deref())?,
                seq: 0,
            }),
        };
        Ok(Page {
            orders,
            more,
            resume,
        })
    }

    async fn try_seed(&self, orders: Vec<Order>) -> Result<(), StoreError> {
        // The transaction's connection never goes back to the pool: one cut short inside it
        // is closed, never lent with the transaction still open. Seeding happens once.
        let mut conn = Object::take(self.patient_connection().await?.0).raw;
        let mut tx = conn.begin().await.map_err(classify)?;
        // Blocks concurrent seeders and creates until this transaction ends.
        sqlx::query("LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let has_orders: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM orders)")
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        if has_orders {
            return Ok(());
        }
        for order in orders {
            let seq = OrderId::parse(&order.id)
                .and_then(row_seq)
                .ok_or_else(|| StoreError::Internal(format!("bad seed id {}", order.id).into()))?;
            let items = ItemColumns::of(&order.items).map_err(classify)?;
            sqlx::query(
                "INSERT INTO orders (seq, customer_name, order_date, total_amount, status,
                                     shipping_address, tracking_number)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(seq)
            .bind(&order.customer_name)
            .bind(order.order_date)
            .bind(order.total_amount.decimal())
            .bind(order.status.as_str())
            .bind(&order.shipping_address)
            .bind(&order.tracking_number)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            sqlx::query(
                "INSERT INTO order_items (order_seq, position, product_id, name, quantity, price)
                 SELECT $1, item.position, item.product_id, item.name, item.quantity, item.price
                 FROM UNNEST($2::bigint[], $3::text[], $4::int[], $5::numeric[]) WITH ORDINALITY
                     AS item (product_id, name, quantity, price, position)",
            )
            .bind(seq)
            .bind(&items.product_ids)
            .bind(&items.names)
            .bind(&items.quantities)
            .bind(&items.prices)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        // New orders continue after the seeded ids.
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('orders', 'seq'), max(seq)) FROM orders
             HAVING max(seq) IS NOT NULL",
        )
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)
    }
}

#[async_trait]
impl OrderStore for PostgresStore {
    async fn create(
        &self,
        order: NewOrder,
        idempotency: Option<Idempotency>,
    ) -> Result<Created, StoreError> {
        let order_date = to_micros(Utc::now());
        let result = match &idempotency {
            Some(idempotency) => self.create_keyed(&order, order_date, idempotency).await,
            None => self
                .insert(&order, order_date, None)
                .await
                .map(|seq| Created {
                    order: Arc::new(order.into_order(seq.to_string(), order_date)),
                    replayed: false,
                }),
        };
        self.checked(result).await
    }

    async fn get(&self, id: OrderId) -> Result<Option<Arc<Order>>, StoreError> {
        let Some(seq) = row_seq(id) else {
            return Ok(None);
        };
        let result = self.fetch(seq).await.map(|order| order.map(Arc::new));
        self.checked(result).await
    }

    async fn list(&self, page: PageRequest) -> Result<Page, StoreError> {
        let result = self.try_list(page).await;
        self.checked(result).await
    }

    async fn set_status(
        &self,
        id: OrderId,
        change: StatusChange,
    ) -> Result<Arc<Order>, StoreError> {
        let seq = row_seq(id).ok_or(StoreError::NotFound)?;
        let result = self.try_set_status(seq, &change).await.map(Arc::new);
        self.checked(result).await
    }

    async fn seed(&self, orders: Vec<Order>) -> Result<(), StoreError> {
        let result = self.try_seed(orders).await;
        self.checked(result).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let result = match self.patient_connection().await {
            Ok(mut conn) => {
                let result = sqlx::query("SELECT 1").execute(&mut *conn).await;
                conn.finish(result).map(drop).map_err(classify)
            }
            Err(error) => Err(error),
        };
        self.checked(result).await
    }
}

/// The Amazon RDS certificate authorities, from `service/certs` (where `fetch-rds-ca.sh`
/// says where they come from and how to refresh them).
const RDS_CA_BUNDLE: &[u8] = include_bytes!("../../certs/rds-ca-bundle.pem");

/// Settings every connection starts with: the schema to work in, the statement timeout, and
/// for a URL that asks to verify the server (`sslmode=verify-full` or `verify-ca`, as one
/// built from an RDS secret does) without naming CAs of its own, the RDS CAs and
/// `DB_CA_BUNDLE`'s.
fn connect_options(
    url: &SecretString,
    schema: &str,
    statement_timeout: Duration,
    ca_bundle: Option<&[u8]>,
) -> Result<PgConnectOptions, PostgresError> {
    let mut options =
        PgConnectOptions::from_str(url.expose_secret()).map_err(PostgresError::InvalidUrl)?;
    let verifies = matches!(
        options.get_ssl_mode(),
        PgSslMode::VerifyCa | PgSslMode::VerifyFull
    );
    if verifies && !url.expose_secret().contains("sslrootcert=") {
        let mut pem = RDS_CA_BUNDLE.to_vec();
        if let Some(extra) = ca_bundle {
            pem.push(b'\n');
            pem.extend_from_slice(extra);
        }
        options = options.ssl_root_cert_from_pem(pem);
    }
    let options = options.application_name("order-service").options([
        ("search_path", schema.to_owned()),
        (
            "statement_timeout",
            format!("{}ms", statement_timeout.as_millis()),
        ),
    ]);
    Ok(options)
}

/// The schema name goes into SQL and a startup option unquoted: a lowercase SQL identifier
/// (`DB_SCHEMA`'s check in config is this one).
pub fn is_schema_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && s.len() <= 63
}

/// Retryable failures (the database is down, unreachable, overloaded, restarting, or too
/// slow) become `Unavailable`, a 503; anything else is a bug or bad data.
fn classify(error: sqlx::Error) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_sqlstate(&code)),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Internal(Box::new(error))
    }
}

/// SQLSTATE classes worth a retry: connection exceptions (08), serialization failures and
/// deadlocks (40), insufficient resources (53), operator intervention such as shutdown or
/// statement timeout (57), and rejected credentials (28) while they are being rotated.
fn is_transient_sqlstate(code: &str) -> bool {
    ["08", "28", "40", "53", "57"]
        .iter()
        .any(|class| code.starts_with(class))
}

fn is_auth_failure(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|code| code.starts_with("28")))
}

fn is_idempotency_conflict(error: &StoreError) -> bool {
    let StoreError::Internal(cause) = error else {
        return false;
    };
    matches!(cause.downcast_ref::<sqlx::Error>(), Some(sqlx::Error::Database(db))
        if db.is_unique_violation() && db.constraint() == Some("idempotency_keys_pkey"))
}

/// Items as parallel arrays, so one statement inserts them all with UNNEST.
struct ItemColumns {
    product_ids: Vec<i64>,
    names: Vec<String>,
    quantities: Vec<i32>,
    prices: Vec<Decimal>,
}

impl ItemColumns {
    fn of(items: &[OrderItem]) -> Result<Self, sqlx::Error> {
        let mut columns = ItemColumns {
            product_ids: Vec::with_capacity(items.len()),
            names: Vec::with_capacity(items.len()),
            quantities: Vec::with_capacity(items.len()),
            prices: Vec::with_capacity(items.len()),
        };
        for item in items {
            columns.product_ids.push(item.product_id);
            columns.names.push(item.name.clone());
            columns.quantities.push(
                i32::try_from(item.quantity)
                    .map_err(|_| sqlx::Error::Encode("quantity out of range".into()))?,
            );
            columns.prices.push(item.price.decimal());
        }
        Ok(columns)
    }
}

/// The columns of an order read, one row per order with its items as arrays in position
/// order (an order without items has NULL arrays), from `orders o` joined with `items!()`.
macro_rules! order_columns {
    () => {
        "o.created_xid::text AS tx, o.seq, o.version, o.customer_name, o.order_date, \
         o.total_amount, o.status, o.shipping_address, o.tracking_number, \
         i.product_ids, i.names, i.quantities, i.prices"
    };
}
macro_rules! items {
    () => {
        " LEFT JOIN LATERAL (
              SELECT array_agg(product_id ORDER BY position) AS product_ids,
                     array_agg(name ORDER BY position) AS names,
                     array_agg(quantity ORDER BY position) AS quantities,
                     array_agg(price ORDER BY position) AS prices
              FROM order_items WHERE order_seq = o.seq
          ) i ON true "
    };
}

const GET_ORDER: &str = concat!(
    "SELECT ",
    order_columns!(),
    " FROM orders o",
    items!(),
    "WHERE o.seq = $1"
);

/// The compare-and-set of a status change (legal from-states, and the versions `If-Match`
/// names when given), answering the changed order.
const SET_STATUS: &str = concat!(
    "WITH o AS (
         UPDATE orders
         SET status = $3, tracking_number = COALESCE($4, tracking_number), version = version + 1
         WHERE seq = $1 AND status = ANY($2::text[])
           AND ($5::bigint[] IS NULL OR version = ANY($5::bigint[]))
         RETURNING *
     )
     SELECT ",
    order_columns!(),
    " FROM o",
    items!()
);

/// An idempotency key ($1 scope, $2 key) with the order it created, and whether it is younger
/// than the time to live ($3).
const FIND_KEY: &str = concat!(
    "SELECT k.fingerprint, k.created_at >= now() - $3::interval AS live, ",
    order_columns!(),
    " FROM idempotency_keys k JOIN orders o ON o.seq = k.order_seq",
    items!(),
    "WHERE k.scope = $1 AND k.key = $2"
);

/// Bytes every order's JSON has besides its text fields and items (field names, id, date,
/// amount, status), from below: `{"id":"1","customer_name":"","order_date":"…Z",…}` is longer.
macro_rules! order_json_floor {
    () => {
        "120"
    };
}

/// Bytes every item's JSON has besides its name, from below: `{"product_id":1,"name":"",
/// "quantity":1,"price":0.0}` and the comma after it.
macro_rules! item_json_floor {
    () => {
        "50"
    };
}

/// $1, $2: the position (created_xid as text, seq) the page starts after; $3: rows wanted;
/// $4: the page's byte budget. The fence row is there even when no order is, and `try_list`
/// explains the fence.
///
/// Only the rows the page can carry are sent: each order's JSON size is estimated from below
/// (`bytes`: its text fields and a floor for the rest), and an order is sent only while the
/// estimates before it stay under the budget, or as one of the first two (the first is on
/// every page, the second tells whether more follow). Every order that fits, and the one
/// after it, is sent; `PageRequest::fitting` makes the exact cut.
const LIST_PAGE: &str = concat!(
    "WITH fence AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
     SELECT fence.xmin::text AS fence, page.*
     FROM fence LEFT JOIN LATERAL (
         SELECT o.created_xid AS sort_xid, ",
    order_columns!(),
    " FROM (
             SELECT * FROM (
                 SELECT sized.*, row_number() OVER w AS n,
                        coalesce(sum(sized.bytes) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING
                                                          AND 1 PRECEDING), 0) AS before
                 FROM (
                     SELECT orders.*,
                            ",
    order_json_floor!(),
    " + coalesce(octet_length(customer_name), 0)
                              + coalesce(octet_length(shipping_address), 0)
                              + coalesce(octet_length(tracking_number), 0)
                              + coalesce(items.bytes, 0) AS bytes
                     FROM orders LEFT JOIN LATERAL (
                         SELECT sum(",
    item_json_floor!(),
    " + octet_length(name)) AS bytes
                         FROM order_items WHERE order_seq = orders.seq
                     ) items ON true
                     WHERE (created_xid, seq) > ($1::text::xid8, $2) AND created_xid < fence.xmin
                     ORDER BY created_xid, seq
                     LIMIT $3
                 ) sized
                 WINDOW w AS (ORDER BY sized.created_xid, sized.seq)
             ) counted
             WHERE n <= 2 OR before < $4
         ) o",
    items!(),
    ") page ON true
     ORDER BY page.sort_xid, page.seq"
);

/// One order from a row of `order_columns!()`.
fn order_from_row(row: &PgRow) -> Result<Order, StoreError> {
    let seq: i64 = row.try_get("seq").map_err(internal)?;
    let version: i64 = row.try_get("version").map_err(internal)?;
    let product_ids: Option<Vec<i64>> = row.try_get("product_ids").map_err(internal)?;
    let names: Option<Vec<String>> = row.try_get("names").map_err(internal)?;
    let quantities: Option<Vec<i32>> = row.try_get("quantities").map_err(internal)?;
    let prices: Option<Vec<Decimal>> = row.try_get("prices").map_err(internal)?;
    let items = product_ids
        .unwrap_or_default()
        .into_iter()
        .zip(names.unwrap_or_default())
        .zip(quantities.unwrap_or_default())
        .zip(prices.unwrap_or_default())
        .map(|(((product_id, name), quantity), price)| {
            Ok(OrderItem {
                product_id,
                name,
                quantity: u32::try_from(quantity).map_err(internal)?,
                price: money(price)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Order {
        id: seq.to_string(),
        customer_name: row.try_get("customer_name").map_err(internal)?,
        order_date: row.try_get("order_date").map_err(internal)?,
        total_amount: money(row.try_get("total_amount").map_err(internal)?)?,
        status: parse_status(row.try_get("status").map_err(internal)?)?,
        items,
        shipping_address: row.try_get("shipping_address").map_err(internal)?,
        tracking_number: row.try_get("tracking_number").map_err(internal)?,
        version: u64::try_from(version).map_err(internal)?,
        json: Default::default(),
    })
}

/// The row's `seq` of an order id; `None` for an id beyond the column's range.
fn row_seq(id: OrderId) -> Option<i64> {
    i64::try_from(id.sequence()).ok()
}

/// A transaction id (xid8) as PostgreSQL prints it; orders from before it was recorded
/// count as 0.
fn parse_tx(text: Option<&str>) -> Result<u64, StoreError> {
    text.map_or(Ok(0), |text| {
        text.parse()
            .map_err(|_| StoreError::Internal(format!("bad transaction id {text:?}").into()))
    })
}

/// A duration as a PostgreSQL interval literal.
fn interval(duration: Duration) -> String {
    format!("{} milliseconds", duration.as_millis())
}

fn money(value: Decimal) -> Result<Money, StoreError> {
    Money::parse(value).map_err(internal)
}

fn parse_status(value: &str) -> Result<OrderStatus, StoreError> {
    OrderStatus::parse(value)
        .ok_or_else(|| StoreError::Internal(format!("unknown order status {value:?}").into()))
}

fn internal(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Internal(Box::new(error))
}
