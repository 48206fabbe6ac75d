//! The embedded default store: everything in one process, lost on restart.
//!
//! Orders are kept as `Arc<Order>`: a read clones pointers under the lock and the response is
//! serialised after the lock is released, so a large page costs the other requests little.
//! The store is bounded: at most `max_orders` orders, and idempotency keys are forgotten after
//! their time to live (there is at most one key per order, so keys are bounded too).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;

use super::{
    id_sequence, to_micros, Created, Cursor, Idempotency, OrderStore, Page, PageRequest, Position,
    StatusChange, StoreError, DEFAULT_IDEMPOTENCY_TTL,
};
use crate::domain::{NewOrder, Order, OrderId};

/// Orders a memory store holds unless configured otherwise (`MEMORY_MAX_ORDERS`).
pub const DEFAULT_MAX_ORDERS: usize = 100_000;

pub struct MemoryStore {
    inner: Mutex<Inner>,
    max_orders: usize,
    idempotency_ttl: Duration,
}

/// (credential scope, key)
type KeyId = (String, String);

#[derive(Default)]
struct Inner {
    orders: BTreeMap<u64, Arc<Order>>,
    /// Idempotency key → (request fingerprint, order sequence, when first used).
    idempotency: HashMap<KeyId, (String, u64, Instant)>,
    /// Keys in the order they were first used, to forget expired ones cheaply.
    key_ages: VecDeque<(Instant, KeyId)>,
    last_sequence: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_orders: DEFAULT_MAX_ORDERS,
            idempotency_ttl: DEFAULT_IDEMPOTENCY_TTL,
        }
    }

    /// At most `max_orders` orders; a create beyond answers `StoreError::Full`.
    pub fn with_max_orders(mut self, max_orders: usize) -> Self {
        self.max_orders = max_orders;
        self
    }

    /// How long an idempotency key replays its first response.
    pub fn with_idempotency_ttl(mut self, ttl: Duration) -> Self {
        self.idempotency_ttl = ttl;
        self
    }

    /// Every change below is a single insert or replacement, as `crate::sync` requires.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }
}

impl Inner {
    /// Forgets keys used longer than `ttl` ago.
    fn expire_keys(&mut self, ttl: Duration, now: Instant) {
        while let Some((used, _)) = self.key_ages.front() {
            if now.duration_since(*used) < ttl {
                break;
            }
            if let Some((_, id)) = self.key_ages.pop_front() {
                // The same key may have been used again since; keep that newer entry.
                if self
                    .idempotency
                    .get(&id)
                    .is_some_and(|(_, _, at)| now.duration_since(*at) >= ttl)
                {
                    self.idempotency.remove(&id);
                }
            }
        }
    }
}

#[async_trait]
impl OrderStore for MemoryStore {
    async fn create(
        &self,
        order: NewOrder,
        idempotency: Option<Idempotency>,
    ) -> Result<Created, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.expire_keys(self.idempotency_ttl, now);
        let key_id = idempotency
            .as_ref()
            .map(|i| (i.scope.clone(), i.key.clone()));
        if let (Some(id), Some(idempotency)) = (&key_id, &idempotency) {
            if let Some((first_fingerprint, sequence, _)) = inner.idempotency.get(id) {
                if *first_fingerprint != idempotency.fingerprint {
                    return Err(StoreError::IdempotencyMismatch);
                }
                let order = inner.orders.get(sequence).ok_or(StoreError::NotFound)?;
                return Ok(Created {
                    order: Arc::new(order.as_created()),
                    replayed: true,
                });
            }
        }
        if inner.orders.len() >= self.max_orders {
            return Err(StoreError::Full {
                limit: self.max_orders,
            });
        }
        inner.last_sequence += 1;
        let sequence = inner.last_sequence;
        let order = Arc::new(order.into_order(sequence.to_string(), to_micros(Utc::now())));
        inner.orders.insert(sequence, Arc::clone(&order));
        if let (Some(id), Some(idempotency)) = (key_id, idempotency) {
            inner.key_ages.push_back((now, id.clone()));
            inner
                .idempotency
                .insert(id, (idempotency.fingerprint, sequence, now));
        }
        Ok(Created {
            order,
            replayed: false,
        })
    }

    async fn get(&self, id: OrderId) -> Result<Option<Arc<Order>>, StoreError> {
        Ok(self.lock().orders.get(&id.sequence()).cloned())
    }

    async fn list(&self, page: PageRequest) -> Result<Page, StoreError> {
        // One create at a time under the lock: every position is (0, sequence), and an
        // order is visible from the moment it has its sequence.
        let after = match page.after {
            None => Position::default(),
            Some(Cursor::At(position)) => position,
            Some(Cursor::AfterOrder(sequence)) => Position {
                tx: 0,
                seq: sequence,
            },
        };
        let limit = page.limit as usize;
        let mut orders: Vec<Arc<Order>> = Vec::with_capacity(limit + 1);
        let last_sequence = {
            let inner = self.lock();
            if after.tx == 0 {
                orders.extend(
                    inner
                        .orders
                        .range((Bound::Excluded(after.seq), Bound::Unbounded))
                        .take(limit + 1)
                        .map(|(_, order)| Arc::clone(order)),
                );
            }
            inner.last_sequence
        };
        // Sized after the lock is released: an order's JSON may still have to be made.
        let fitting = page.fitting(&orders);
        let more = orders.len() > fitting;
        orders.truncate(fitting);
        let resume = match (more, orders.last().and_then(|o| id_sequence(&o.id))) {
            (true, Some(seq)) => Position { tx: 0, seq },
            _ => after.max(Position {
                tx: 0,
                seq: last_sequence,
            }),
        };
        Ok(Page {
            orders,
            more,
            resume,
        })
    }

    async fn set_status(
        &self,
        id: OrderId,
        change: StatusChange,
    ) -> Result<Arc<Order>, StoreError> {
        let sequence = id.sequence();
        let mut inner = self.lock();
        let stored = inner
            .orders
            .get_mut(&sequence)
            .ok_or(StoreError::NotFound)?;
        let version_matches = change
            .versions
            .as_ref()
            .is_none_or(|versions| versions.contains(&stored.version));
        if !change.from.contains(&stored.status) || !version_matches {
            return Err(StoreError::StatusConflict {
                current: Arc::clone(stored),
            });
        }
        // Copy on write: readers holding the previous version keep it unchanged.
        let order = Arc::make_mut(stored);
        order.status = change.to;
        order.version += 1;
        // When no reader held it, `make_mut` changed the stored order in place: its JSON is
        // stale.
        order.json = Default::default();
        if change.tracking_number.is_some() {
            order.tracking_number = change.tracking_number;
        }
        Ok(Arc::clone(stored))
    }

    async fn seed(&self, orders: Vec<Order>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if !inner.orders.is_empty() {
            return Ok(());
        }
        for order in orders {
            let sequence = id_sequence(&order.id)
                .ok_or_else(|| StoreError::Internal(format!("bad seed id {}", order.id).into()))?;
            inner.last_sequence = inner.last_sequence.max(sequence);
            inner.orders.insert(sequence, Arc::new(order));
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ItemInput, OrderStatus};

    fn order_id(text: &str) -> OrderId {
        OrderId::parse(text).expect("an order id")
    }

    fn new_order(name: &str) -> NewOrder {
        let item = ItemInput {
            product_id: 1,
            name: "Lamp".into(),
            quantity: 1,
            price: 1.0,
        };
        NewOrder::parse(name, vec![item], "1 Main St").expect("valid")
    }

    #[tokio::test]
    async fn reads_share_the_stored_order_instead_of_copying_it() {
        let store = MemoryStore::new();
        let created = store.create(new_order("Ada"), None).await.expect("create");
        let read = store
            .get(order_id(&created.order.id))
            .await
            .expect("get")
            .expect("exists");
        let page = store.list(PageRequest::new(10, None)).await.expect("list");
        assert!(Arc::ptr_eq(&created.order, &read));
        assert!(Arc::ptr_eq(&read, &page.orders[0]));
        // A change does not alter what an earlier reader holds.
        let change = StatusChange {
            from: vec![OrderStatus::Pending],
            to: OrderStatus::Processing,
            tracking_number: None,
            versions: None,
        };
        let changed = store
            .set_status(order_id(&read.id), change)
            .await
            .expect("change");
        assert_eq!(read.status, OrderStatus::Pending);
        assert_eq!(changed.status, OrderStatus::Processing);
    }

    #[tokio::test]
    async fn a_change_made_in_place_is_not_served_from_the_old_json() {
        let store = MemoryStore::new();
        let id = store
            .create(new_order("Ada"), None)
            .await
            .expect("create")
            .order
            .id
            .clone();
        let before = store
            .get(order_id(&id))
            .await
            .expect("get")
            .expect("exists")
            .to_json();
        assert!(std::str::from_utf8(&before).is_ok_and(|j| j.contains("PENDING")));
        // No reader holds the order now, so the change is made in place.
        let change = StatusChange {
            from: vec![OrderStatus::Pending],
            to: OrderStatus::Processing,
            tracking_number: None,
            versions: None,
        };
        drop(
            store
                .set_status(order_id(&id), change)
                .await
                .expect("change"),
        );
        let after = store
            .get(order_id(&id))
            .await
            .expect("get")
            .expect("exists")
            .to_json();
        assert!(std::str::from_utf8(&after).is_ok_and(|j| j.contains("PROCESSING")));
    }

    #[tokio::test]
    async fn a_full_store_refuses_new_orders_but_still_replays() {
        let store = MemoryStore::new().with_max_orders(2);
        let key = |key: &str| {
            Some(Idempotency {
                scope: "client".into(),
                key: key.into(),
                fingerprint: new_order("A").fingerprint(),
            })
        };
        store
            .create(new_order("A"), key("k1"))
            .await
            .expect("first");
        store.create(new_order("B"), None).await.expect("second");
        let full = store.create(new_order("C"), None).await;
        assert!(
            matches!(full, Err(StoreError::Full { limit: 2 })),
            "{full:?}"
        );
        let replay = store
            .create(new_order("A"), key("k1"))
            .await
            .expect("replay");
        assert!(replay.replayed);
    }

    #[tokio::test]
    async fn expired_keys_are_forgotten() {
        let store = MemoryStore::new().with_idempotency_ttl(Duration::from_millis(50));
        let key = Some(Idempotency {
            scope: "client".into(),
            key: "k".into(),
            fingerprint: new_order("A").fingerprint(),
        });
        store
            .create(new_order("A"), key.clone())
            .await
            .expect("first");
        tokio::time::sleep(Duration::from_millis(80)).await;
        // Another create expires the key and its entry is gone.
        store.create(new_order("B"), None).await.expect("other");
        assert!(store.lock().idempotency.is_empty());
        assert!(store.lock().key_ages.is_empty());
        let again = store.create(new_order("A"), key).await.expect("again");
        assert!(!again.replayed);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::ItemInput;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Following cursors with any page size visits every order once, in id order, and
        /// a cursor past the end (or between ids) is never an error.
        #[test]
        fn paging_visits_every_order_once(count in 0_usize..40, limit in 1_u32..12, extra in 0_u64..5) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            runtime.block_on(async {
                let store = MemoryStore::new();
                let mut ids = Vec::new();
                for n in 0..count {
                    let item = ItemInput { product_id: 1, name: "Lamp".into(), quantity: 1, price: 1.0 };
                    let order = NewOrder::parse(&format!("C{n}"), vec![item], "1 Main St").expect("valid");
                    ids.push(store.create(order, None).await.expect("create").order.id.clone());
                }
                let mut seen = Vec::new();
                let mut after = None;
                loop {
                    let page = store.list(PageRequest::new(limit, after)).await.expect("list");
                    prop_assert!(page.orders.len() <= limit as usize);
                    seen.extend(page.orders.iter().map(|o| o.id.clone()));
                    after = Some(Cursor::At(page.resume));
                    if !page.more {
                        break;
                    }
                }
                prop_assert_eq!(&seen, &ids);
                let beyond = store
                    .list(PageRequest::new(limit, Some(Cursor::AfterOrder(count as u64 + extra))))
                    .await
                    .expect("list");
                prop_assert!(beyond.orders.is_empty() && !beyond.more);
                // The last page's resume position continues with what is created later.
                let item = ItemInput { product_id: 1, name: "Lamp".into(), quantity: 1, price: 1.0 };
                let order = NewOrder::parse("Later", vec![item], "1 Main St").expect("valid");
                let later = store.create(order, None).await.expect("create").order.id.clone();
                let resumed = store.list(PageRequest::new(limit, after)).await.expect("list");
                prop_assert_eq!(resumed.orders.iter().map(|o| o.id.clone()).collect::<Vec<_>>(), vec![later]);
                Ok(())
            })?;
        }
    }
}
