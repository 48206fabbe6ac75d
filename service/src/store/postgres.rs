//! The PostgreSQL store: durable, shared by every replica, safe under concurrent writers.
//!
//! Every operation is one SQL statement (one round trip, one implicit transaction), except
//! seeding. Idempotent creates rely on the key's primary key: of two racing creates with the
//! same key, the second waits for the first to commit, fails with a unique violation, and
//! replays the winner.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};

use super::{
    id_sequence, to_micros, Created, CredentialRefresher, Idempotency, OrderStore, Page,
    PageRequest, StatusChange, StoreError, DEFAULT_IDEMPOTENCY_TTL,
};
use crate::config::DatabaseConfig;
use crate::domain::{Money, NewOrder, Order, OrderItem, OrderStatus};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Serialises start-up work (schema creation and migrations) across replicas starting at once;
/// any constant shared by every instance of this service works.
const STARTUP_LOCK_ID: i64 = 0x6f72_6465_7273; // "orders"

/// First half of the two-part advisory lock that puts creates in commit order; the second
/// half is the schema's hash, so schemas (previews) do not wait for each other.
const CREATE_LOCK_CLASS: i32 = 0x6f72_6473; // "ords"

/// A pooled connection idle this long is pinged before use.
const STALE_AFTER_IDLE: Duration = Duration::from_secs(1);

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
    #[error("cannot create schema {schema}: {cause}")]
    CreateSchema { schema: String, cause: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(MigrateError),
}

impl From<MigrateError> for PostgresError {
    fn from(error: MigrateError) -> Self {
        PostgresError::Migrate(error)
    }
}

pub struct PostgresStore {
    pool: PgPool,
    schema: String,
    statement_timeout: Duration,
    rotation: Option<Rotation>,
    idempotency_ttl: Duration,
}

/// Where fresh credentials come from when the database rejects the current ones.
struct Rotation {
    refresher: Arc<dyn CredentialRefresher>,
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
}

impl PostgresStore {
    /// Opens the pool, creates `config.schema` when missing and applies the embedded migrations,
    /// serialised across concurrent starters by an advisory lock.
    pub async fn connect(
        config: &DatabaseConfig,
        url: SecretString,
        refresher: Option<Arc<dyn CredentialRefresher>>,
    ) -> Result<Self, PostgresError> {
        if !is_plain_identifier(&config.schema) {
            return Err(PostgresError::InvalidSchema(config.schema.clone()));
        }
        let store = PostgresStore {
            pool: PgPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(config.acquire_timeout)
                // sqlx pings every connection before handing it out; under load that is a
                // round trip per query. Test only connections idle long enough to have gone
                // stale (a database restart): a busy pool hands out live ones, and a broken
                // connection is dropped on release anyway.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= STALE_AFTER_IDLE {
                            conn.ping().await?;
                        }
                        Ok(true)
                    })
                })
                .connect_lazy_with(connect_options(
                    &url,
                    &config.schema,
                    config.statement_timeout,
                )?),
            schema: config.schema.clone(),
            statement_timeout: config.statement_timeout,
            rotation: refresher.map(|refresher| Rotation {
                refresher,
                last_attempt: tokio::sync::Mutex::new(None),
            }),
            idempotency_ttl: DEFAULT_IDEMPOTENCY_TTL,
        };
        store.prepare_schema().await?;
        Ok(store)
    }

    /// Runs on a connection taken out of the pool and closed afterwards, so the session-level
    /// advisory locks end with it even when a migration fails half-way.
    async fn prepare_schema(&self) -> Result<(), PostgresError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(PostgresError::Connect)?
            .detach();
        // CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent twin (it can fail
        // with a unique violation), so starters queue on this lock. sqlx's migrator takes its
        // own lock too, but only after it has created its table in our schema.
        // "already exists, skipping" notices on every start are noise in the logs.
        // Waiting for another replica's migration, and a long migration itself, are not the
        // runaway queries `statement_timeout` guards against: without this a replica queued
        // behind a slow migration is cancelled after the timeout and crash-loops.
        sqlx::query("SET client_min_messages = warning")
            .execute(&mut conn)
            .await
            .map_err(PostgresError::Connect)?;
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut conn)
            .await
            .map_err(PostgresError::Connect)?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(STARTUP_LOCK_ID)
            .execute(&mut conn)
            .await
            .map_err(PostgresError::Connect)?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", self.schema))
            .execute(&mut conn)
            .await
            .map_err(|cause| PostgresError::CreateSchema {
                schema: self.schema.clone(),
                cause,
            })?;
        MIGRATOR.run_direct(&mut conn).await?;
        // Closing ends the session and with it the advisory lock.
        let _ = conn.close().await;
        Ok(())
    }

    /// How long an idempotency key replays its first response.
    pub fn with_idempotency_ttl(mut self, ttl: Duration) -> Self {
        self.idempotency_ttl = ttl;
        self
    }

    /// The connection pool, for checks outside the store's operations.
    pub fn pool(&self) -> &PgPool {
        &self.pool
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
        match connect_options(&url, &self.schema, self.statement_timeout) {
            Ok(options) => self.pool.set_connect_options(options),
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
    ) -> Result<i64, sqlx::Error> {
        let items = ItemColumns::of(&order.items)?;
        let total = order.total().unwrap_or_default();
        // Ids are given in commit order: the insert takes a transaction-level lock before the
        // identity default draws the next id, and holds it until commit. So no order with a
        // smaller id can commit after one with a larger id, and a cursor (the last id a page
        // served) never passes an order that is still to commit. The price is that creates
        // commit one at a time, per schema.
        sqlx::query_scalar(
            "WITH serialised AS (
                 SELECT pg_advisory_xact_lock($11, hashtext(current_schema()))
             ), new_order AS (
                 INSERT INTO orders (customer_name, order_date, total_amount, status, shipping_address)
                 SELECT $1, $2, $3, 'PENDING', $4 FROM serialised
                 RETURNING seq
             ), new_items AS (
                 INSERT INTO order_items (order_seq, position, product_id, name, quantity, price)
                 SELECT new_order.seq, item.position, item.product_id, item.name, item.quantity, item.price
                 FROM new_order,
                      UNNEST($5::bigint[], $6::text[], $7::int[], $8::numeric[]) WITH ORDINALITY
                          AS item (product_id, name, quantity, price, position)
             ), new_key AS (
                 INSERT INTO idempotency_keys (scope, key, fingerprint, order_seq)
                 SELECT $12, $9, $10, new_order.seq FROM new_order WHERE $9::text IS NOT NULL
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
        .bind(CREATE_LOCK_CLASS)
        .bind(idempotency.map(|i| &i.scope))
        .fetch_one(&self.pool)
        .await
    }

    /// Deletes keys older than the time to live, so they neither replay nor pile up. Runs
    /// before a create with a key; the index on `created_at` keeps it cheap.
    async fn expire_keys(&self) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval")
            .bind(interval(self.idempotency_ttl))
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// The first response for a key, when the fingerprint matches: the order as created.
    async fn replay(&self, idempotency: &Idempotency) -> Result<Created, StoreError> {
        let first: Option<(String, i64)> = sqlx::query_as(
            "SELECT fingerprint, order_seq FROM idempotency_keys
             WHERE scope = $1 AND key = $2 AND created_at >= now() - $3::interval",
        )
        .bind(&idempotency.scope)
        .bind(&idempotency.key)
        .bind(interval(self.idempotency_ttl))
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        let (fingerprint, seq) = first.ok_or_else(|| {
            StoreError::Internal("idempotency key vanished after a conflict".into())
        })?;
        if fingerprint != idempotency.fingerprint {
            return Err(StoreError::IdempotencyMismatch);
        }
        let order = self.fetch(seq).await?.ok_or(StoreError::NotFound)?;
        Ok(Created {
            order: Arc::new(order.as_created()),
            replayed: true,
        })
    }

    async fn fetch(&self, seq: i64) -> Result<Option<Order>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS}, {ITEM_COLUMNS}
             FROM orders o LEFT JOIN order_items i ON i.order_seq = o.seq
             WHERE o.seq = $1
             ORDER BY i.position"
        ))
        .bind(seq)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(orders_from_rows(&rows)?.pop())
    }

    async fn try_set_status(&self, seq: i64, change: &StatusChange) -> Result<Order, StoreError> {
        let rows = sqlx::query(&format!(
            "WITH o AS (
                 UPDATE orders
                 SET status = $3, tracking_number = COALESCE($4, tracking_number)
                 WHERE seq = $1 AND status = $2
                 RETURNING *
             )
             SELECT {ORDER_COLUMNS}, {ITEM_COLUMNS}
             FROM o LEFT JOIN order_items i ON i.order_seq = o.seq
             ORDER BY i.position"
        ))
        .bind(seq)
        .bind(change.from.as_str())
        .bind(change.to.as_str())
        .bind(change.tracking_number.as_deref())
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        if let Some(order) = orders_from_rows(&rows)?.pop() {
            return Ok(order);
        }
        // Nothing changed: either there is no such order or its status moved on.
        let current: Option<String> =
            sqlx::query_scalar("SELECT status FROM orders WHERE seq = $1")
                .bind(seq)
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
        match current {
            None => Err(StoreError::NotFound),
            Some(status) => Err(StoreError::StatusConflict {
                current: parse_status(&status)?,
            }),
        }
    }

    async fn try_list(&self, page: PageRequest) -> Result<Page, StoreError> {
        // Ids beyond i64 cannot exist, so such a cursor starts past the end.
        let after = i64::try_from(page.after.unwrap_or(0)).unwrap_or(i64::MAX);
        let rows = sqlx::query(&format!(
            "WITH o AS (SELECT * FROM orders WHERE seq > $1 ORDER BY seq LIMIT $2)
             SELECT {ORDER_COLUMNS}, {ITEM_COLUMNS}
             FROM o LEFT JOIN order_items i ON i.order_seq = o.seq
             ORDER BY o.seq, i.position"
        ))
        .bind(after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let mut orders: Vec<Arc<Order>> =
            orders_from_rows(&rows)?.into_iter().map(Arc::new).collect();
        let next_after = if orders.len() > page.limit as usize {
            orders.truncate(page.limit as usize);
            orders.last().and_then(|o| id_sequence(&o.id))
        } else {
            None
        };
        Ok(Page { orders, next_after })
    }

    async fn try_seed(&self, orders: Vec<Order>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
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
            let seq = id_sequence(&order.id)
                .and_then(|s| i64::try_from(s).ok())
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
        if idempotency.is_some() {
            if let Err(error) = self.expire_keys().await {
                return self.checked(Err(classify(error))).await;
            }
        }
        let result = match self.insert(&order, order_date, idempotency.as_ref()).await {
            Ok(seq) => Ok(Created {
                order: Arc::new(order.into_order(seq.to_string(), order_date)),
                replayed: false,
            }),
            // The key was committed by another request first: answer as it did.
            Err(error) if is_idempotency_conflict(&error) => match &idempotency {
                Some(idempotency) => self.replay(idempotency).await,
                None => Err(classify(error)),
            },
            Err(error) => Err(classify(error)),
        };
        self.checked(result).await
    }

    async fn get(&self, id: &str) -> Result<Option<Arc<Order>>, StoreError> {
        let Some(seq) = id_sequence(id).and_then(|s| i64::try_from(s).ok()) else {
            return Ok(None);
        };
        let result = self.fetch(seq).await.map(|order| order.map(Arc::new));
        self.checked(result).await
    }

    async fn list(&self, page: PageRequest) -> Result<Page, StoreError> {
        let result = self.try_list(page).await;
        self.checked(result).await
    }

    async fn set_status(&self, id: &str, change: StatusChange) -> Result<Arc<Order>, StoreError> {
        let seq = id_sequence(id)
            .and_then(|s| i64::try_from(s).ok())
            .ok_or(StoreError::NotFound)?;
        let result = self.try_set_status(seq, &change).await.map(Arc::new);
        self.checked(result).await
    }

    async fn seed(&self, orders: Vec<Order>) -> Result<(), StoreError> {
        let result = self.try_seed(orders).await;
        self.checked(result).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let result = sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(classify);
        self.checked(result).await
    }
}

/// Settings every connection starts with: the schema to work in and the statement timeout.
fn connect_options(
    url: &SecretString,
    schema: &str,
    statement_timeout: Duration,
) -> Result<PgConnectOptions, PostgresError> {
    let options = PgConnectOptions::from_str(url.expose_secret())
        .map_err(PostgresError::InvalidUrl)?
        .application_name("order-service")
        .options([
            ("search_path", schema.to_owned()),
            (
                "statement_timeout",
                format!("{}ms", statement_timeout.as_millis()),
            ),
        ]);
    Ok(options)
}

/// The schema name goes into SQL and a startup option unquoted; config validates it too.
fn is_plain_identifier(s: &str) -> bool {
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

fn is_idempotency_conflict(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
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

const ORDER_COLUMNS: &str = "o.seq, o.customer_name, o.order_date, o.total_amount, o.status, \
                             o.shipping_address, o.tracking_number";
const ITEM_COLUMNS: &str = "i.product_id, i.name AS item_name, i.quantity, i.price";

/// Folds joined rows (one per item, ordered by order) into orders.
fn orders_from_rows(rows: &[PgRow]) -> Result<Vec<Order>, StoreError> {
    let mut orders: Vec<Order> = Vec::new();
    let mut last_seq = None;
    for row in rows {
        let seq: i64 = row.try_get("seq").map_err(internal)?;
        if last_seq != Some(seq) {
            last_seq = Some(seq);
            orders.push(Order {
                id: seq.to_string(),
                customer_name: row.try_get("customer_name").map_err(internal)?,
                order_date: row.try_get("order_date").map_err(internal)?,
                total_amount: money(row.try_get("total_amount").map_err(internal)?)?,
                status: parse_status(row.try_get("status").map_err(internal)?)?,
                items: Vec::new(),
                shipping_address: row.try_get("shipping_address").map_err(internal)?,
                tracking_number: row.try_get("tracking_number").map_err(internal)?,
            });
        }
        // The LEFT JOIN yields one row with NULL item columns for an order without items.
        let product_id: Option<i64> = row.try_get("product_id").map_err(internal)?;
        if let (Some(product_id), Some(order)) = (product_id, orders.last_mut()) {
            let quantity: i32 = row.try_get("quantity").map_err(internal)?;
            order.items.push(OrderItem {
                product_id,
                name: row.try_get("item_name").map_err(internal)?,
                quantity: u32::try_from(quantity).map_err(internal)?,
                price: money(row.try_get("price").map_err(internal)?)?,
            });
        }
    }
    Ok(orders)
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
