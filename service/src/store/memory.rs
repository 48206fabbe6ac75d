//! The embedded default store: everything in one process, lost on restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::Utc;

use super::{
    id_sequence, to_micros, Created, Idempotency, OrderStore, Page, PageRequest, StatusChange,
    StoreError,
};
use crate::domain::{NewOrder, Order};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    orders: BTreeMap<u64, Order>,
    /// Idempotency key → (request fingerprint, order sequence).
    idempotency: HashMap<String, (String, u64)>,
    last_sequence: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave an order half-written: every change
        // below is a single insert or field assignment, so the data stays usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl OrderStore for MemoryStore {
    async fn create(
        &self,
        order: NewOrder,
        idempotency: Option<Idempotency>,
    ) -> Result<Created, StoreError> {
        let mut inner = self.lock();
        if let Some(Idempotency { key, fingerprint }) = &idempotency {
            if let Some((first_fingerprint, sequence)) = inner.idempotency.get(key) {
                if first_fingerprint != fingerprint {
                    return Err(StoreError::IdempotencyMismatch);
                }
                let order = inner
                    .orders
                    .get(sequence)
                    .cloned()
                    .ok_or(StoreError::NotFound)?;
                return Ok(Created {
                    order,
                    replayed: true,
                });
            }
        }
        inner.last_sequence += 1;
        let sequence = inner.last_sequence;
        let order = order.into_order(sequence.to_string(), to_micros(Utc::now()));
        inner.orders.insert(sequence, order.clone());
        if let Some(Idempotency { key, fingerprint }) = idempotency {
            inner.idempotency.insert(key, (fingerprint, sequence));
        }
        Ok(Created {
            order,
            replayed: false,
        })
    }

    async fn get(&self, id: &str) -> Result<Option<Order>, StoreError> {
        let Some(sequence) = id_sequence(id) else {
            return Ok(None);
        };
        Ok(self.lock().orders.get(&sequence).cloned())
    }

    async fn list(&self, page: PageRequest) -> Result<Page, StoreError> {
        let inner = self.lock();
        let start = page.after.map_or(0, |after| after.saturating_add(1));
        let mut orders: Vec<Order> = inner
            .orders
            .range(start..)
            .take(page.limit as usize + 1)
            .map(|(_, order)| order.clone())
            .collect();
        let next_after = if orders.len() > page.limit as usize {
            orders.truncate(page.limit as usize);
            orders.last().and_then(|o| id_sequence(&o.id))
        } else {
            None
        };
        Ok(Page { orders, next_after })
    }

    async fn set_status(&self, id: &str, change: StatusChange) -> Result<Order, StoreError> {
        let sequence = id_sequence(id).ok_or(StoreError::NotFound)?;
        let mut inner = self.lock();
        let order = inner
            .orders
            .get_mut(&sequence)
            .ok_or(StoreError::NotFound)?;
        if order.status != change.from {
            return Err(StoreError::StatusConflict {
                current: order.status,
            });
        }
        order.status = change.to;
        if change.tracking_number.is_some() {
            order.tracking_number = change.tracking_number;
        }
        Ok(order.clone())
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
            inner.orders.insert(sequence, order);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
