//! Where orders live: one trait, one implementation per backend.

mod memory;
mod postgres;
mod sample;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use async_trait::async_trait;

use crate::domain::{NewOrder, Order, OrderId, OrderStatus};

/// How long an idempotency key is remembered unless configured otherwise.
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How often a database store deletes expired idempotency keys, in the background.
pub const KEY_EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

pub use memory::{MemoryStore, DEFAULT_MAX_ORDERS};
pub use postgres::{is_schema_name, required_schema_version, PostgresError, PostgresStore};
pub use sample::sample_orders;

/// Database settings; used when `STORE=postgres` (read by `config`).
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`; when unset the runtime secret must provide the connection.
    pub url: Option<SecretString>,
    pub schema: String,
    pub max_connections: u32,
    /// `DB_POOL_WAIT_TIMEOUT_MS`: how long a request waits for a busy pooled connection
    /// before it is answered 503 (with `Retry-After`).
    pub pool_wait_timeout: Duration,
    /// `DB_ACQUIRE_TIMEOUT_MS`: how long opening a new connection (or checking an idle one)
    /// may take; longer than the wait, so a pool refilling after an outage is not given up.
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    /// `DB_CA_BUNDLE`: certificate authorities (PEM) trusted for the database beside the
    /// Amazon RDS ones the binary carries.
    pub ca_bundle: Option<Arc<[u8]>>,
}

/// Boxed cause of a backend failure; kept for logs, never sent to clients.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("order not found")]
    NotFound,
    /// The conditional change matched nothing: the order is in none of the expected statuses
    /// (or at none of the expected versions). `current` is the order as it is now, for the
    /// caller to decide the answer.
    #[error("order status is {}", current.status.as_str())]
    StatusConflict { current: Arc<Order> },
    #[error("idempotency key was already used for a different request")]
    IdempotencyMismatch,
    /// The store holds as many orders as it is allowed to (memory store).
    #[error("the order store is full ({limit} orders)")]
    Full { limit: usize },
    /// The backend cannot be reached or timed out; the request may be retried.
    #[error("order store unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else the backend reports; a bug or corrupt data, not worth a retry.
    #[error("order store failed")]
    Internal(#[source] BoxError),
}

/// The result of a create: the order, and whether it is the replay of an earlier request.
/// A replay carries the order as the first response showed it (just created), not as it is
/// now, so a retry receives exactly the answer it missed.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub order: Arc<Order>,
    pub replayed: bool,
}

/// Idempotency key, the credential it belongs to, and the fingerprint of the request it was
/// sent with. Keys of different credentials never meet: `scope` is part of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
}

/// A place in the listing order, which is (`tx`, `seq`): the creating transaction, then the
/// order's sequence. A page holds the orders after a position. On PostgreSQL `tx` is the
/// transaction id of the create; the memory store creates one order at a time and uses 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub tx: u64,
    pub seq: u64,
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// A position the service handed out.
    At(Position),
    /// The id of the last order a client saw (the cursor of earlier versions): the page
    /// continues after that order.
    AfterOrder(u64),
}

/// A page request: at most `limit` orders after `after` (from the start when `None`), and no
/// more than fit in `max_bytes` of JSON array (but always at least one order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Cursor>,
    pub max_bytes: usize,
}

impl PageRequest {
    /// At most `limit` orders after `after`, however many bytes they take.
    pub fn new(limit: u32, after: Option<Cursor>) -> Self {
        Self {
            limit,
            after,
            max_bytes: usize::MAX,
        }
    }

    /// The same request within `max_bytes` of JSON array.
    pub fn with_max_bytes(self, max_bytes: usize) -> Self {
        Self { max_bytes, ..self }
    }

    /// How many of `candidates` (the orders after the start, in listing order) this page
    /// carries: at most `limit`, and no order that would take the JSON array past
    /// `max_bytes`, except the first, so that a walk always moves on.
    pub fn fitting(&self, candidates: &[Arc<Order>]) -> usize {
        let mut bytes = 1; // `[`
        let mut count = 0;
        for order in candidates.iter().take(self.limit as usize) {
            // The order and the `,` or `]` after it.
            let next = bytes + order.to_json().len() + 1;
            if count > 0 && next > self.max_bytes {
                break;
            }
            bytes = next;
            count += 1;
        }
        count
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub orders: Vec<Arc<Order>>,
    /// More orders follow now.
    pub more: bool,
    /// Where to continue, now or later: after this page's last order, or on the last page
    /// past every order that can still appear before it.
    pub resume: Position,
}

/// A status change, applied only while the order is in one of the `from` statuses and, when
/// `versions` is given (`If-Match`), at one of those versions: one conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub from: Vec<OrderStatus>,
    pub to: OrderStatus,
    pub tracking_number: Option<String>,
    pub versions: Option<Vec<u64>>,
}

/// Orders are listed in (`tx`, `seq`) order, and a page holds only orders before which no
/// other can still appear: following `resume` sees every order exactly once, even while
/// creates commit in parallel.
/// Orders are shared (`Arc`): reads hand out the stored value without copying it.
#[async_trait]
pub trait OrderStore: Send + Sync + 'static {
    /// Stores a new order. With an idempotency key seen before (same scope, not expired),
    /// returns the first response's order (`replayed`) when the fingerprint matches, and
    /// `IdempotencyMismatch` otherwise.
    async fn create(
        &self,
        order: NewOrder,
        idempotency: Option<Idempotency>,
    ) -> Result<Created, StoreError>;

    async fn get(&self, id: OrderId) -> Result<Option<Arc<Order>>, StoreError>;

    async fn list(&self, page: PageRequest) -> Result<Page, StoreError>;

    /// Applies `change` atomically and bumps the version; `StatusConflict` with the order as
    /// it is when the conditions do not hold.
    async fn set_status(&self, id: OrderId, change: StatusChange)
        -> Result<Arc<Order>, StoreError>;

    /// Inserts the given orders, ids included, when the store holds no orders yet.
    async fn seed(&self, orders: Vec<Order>) -> Result<(), StoreError>;

    /// Cheap round trip that proves the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The sequence number of a stored order's id.
pub fn id_sequence(id: &str) -> Option<u64> {
    OrderId::parse(id).map(OrderId::sequence)
}

/// Timestamps keep microseconds, the precision PostgreSQL stores, so every backend returns
/// the same `order_date` for the same order.
pub fn to_micros(at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    at.trunc_subsecs(6)
}

/// Rotation hook: a database store calls it once when the database rejects its credentials.
/// The runtime-secret loader implements it by fetching the secret again and returning the
/// (possibly new) connection URL.
#[async_trait]
pub trait CredentialRefresher: Send + Sync {
    async fn refresh_database_url(&self) -> Option<secrecy::SecretString>;
}
