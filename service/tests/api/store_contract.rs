//! One contract, every store: the same checks run against the memory and PostgreSQL stores,
//! so both behave the same behind the API.

use std::sync::Arc;

use chrono::Utc;
use order_service::domain::{ItemInput, NewOrder, OrderId, OrderStatus};

use crate::support::order_id;
use order_service::store::{
    sample_orders, Cursor, Idempotency, OrderStore, PageRequest, StatusChange, StoreError,
};

/// Each case runs once per store, as `memory::<case>` and `postgres::<case>`.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    let store = order_service::store::MemoryStore::new()
                        .with_idempotency_ttl(super::KEY_TTL);
                    super::$case(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = crate::support::postgres::TestDb::new().await;
                    let store = db.store("public").await.with_idempotency_ttl(super::KEY_TTL);
                    super::$case(&store).await;
                }
            )*
        }
    };
}

contract!(
    a_created_order_reads_back_exactly,
    ids_are_ascending_digit_strings,
    lists_pages_in_creation_order,
    an_idempotent_retry_replays_the_first_order,
    a_key_reused_for_another_request_is_rejected,
    status_changes_are_compare_and_set,
    a_change_can_be_conditional_on_the_version,
    unknown_orders_are_not_found,
    seeding_keeps_ids_and_order_and_new_ids_follow,
    seeding_leaves_a_store_with_orders_alone,
    ping_answers,
    a_replay_answers_the_order_as_first_created,
    idempotency_keys_are_scoped_per_credential,
    an_expired_key_creates_a_new_order,
    pages_stop_at_the_byte_budget_and_walks_see_every_order_once,
);

/// Idempotency keys of the contract stores live this long.
const KEY_TTL: std::time::Duration = std::time::Duration::from_secs(5);

pub fn new_order(customer: &str) -> NewOrder {
    NewOrder::parse(
        customer,
        vec![
            item(7, "Desk Lamp", 2, 19.99),
            item(8, "Bulb", 3, 0.1),
            item(9, "Gold Desk", 1, 999_999.99),
        ],
        "1 Test Way, Springfield",
    )
    .expect("valid order")
}

fn item(product_id: i64, name: &str, quantity: u32, price: f64) -> ItemInput {
    ItemInput {
        product_id,
        name: name.to_owned(),
        quantity,
        price,
    }
}

fn key(key: &str, order: &NewOrder) -> Option<Idempotency> {
    Some(Idempotency {
        scope: "client-a".into(),
        key: key.to_owned(),
        fingerprint: order.fingerprint(),
    })
}

/// Orders of mixed sizes (1 to 100 items, names with quotes and non-ASCII), then walks with
/// mixed limits and byte budgets drawn by proptest: every walk sees every order once, in
/// order; a page stays within its budget unless it holds a single order; and a page that
/// stops short of its limit does so only because the next order would have passed the budget.
async fn pages_stop_at_the_byte_budget_and_walks_see_every_order_once(store: &dyn OrderStore) {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let sizes = proptest::collection::vec((1_usize..=100, 1_usize..=200), 24);
    let sizes = sizes.new_tree(&mut runner).expect("sizes").current();
    let mut ids = Vec::new();
    for (n, (items, name_chars)) in sizes.into_iter().enumerate() {
        let name: String = "é\"x".chars().cycle().take(name_chars).collect();
        let items = (0..items)
            .map(|i| item(i as i64 + 1, &name, 10_000, 999_999.99))
            .collect();
        let order = NewOrder::parse(&format!("Größe \"{n}\""), items, &name).expect("valid");
        ids.push(
            store
                .create(order, None)
                .await
                .expect("create")
                .order
                .id
                .clone(),
        );
    }
    let json_len = |order: &Arc<order_service::domain::Order>| order.to_json().len();
    let walks = (1_u32..=30, 1_usize..=300_000);
    for _ in 0..24 {
        let (limit, max_bytes) = walks.new_tree(&mut runner).expect("walk").current();
        let mut request = PageRequest::new(limit, None).with_max_bytes(max_bytes);
        let mut seen: Vec<Arc<order_service::domain::Order>> = Vec::new();
        loop {
            let page = store.list(request).await.expect("list");
            let bytes = 1 + page.orders.iter().map(|o| json_len(o) + 1).sum::<usize>();
            let context = format!(
                "limit {limit}, budget {max_bytes}, after {} orders",
                seen.len()
            );
            assert!(page.orders.len() <= limit as usize, "{context}");
            assert!(
                bytes <= max_bytes || page.orders.len() == 1,
                "{bytes} bytes; {context}"
            );
            seen.extend(page.orders.iter().cloned());
            if !page.more {
                break;
            }
            assert!(!page.orders.is_empty(), "{context}");
            if page.orders.len() < limit as usize {
                let next = store
                    .get(order_id(&ids[seen.len()]))
                    .await
                    .expect("get")
                    .expect("exists");
                assert!(
                    bytes + json_len(&next) + 1 > max_bytes,
                    "stopped early; {context}"
                );
            }
            request.after = Some(Cursor::At(page.resume));
        }
        let seen: Vec<&str> = seen.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(seen, ids, "limit {limit}, budget {max_bytes}");
    }
}

fn first_page(limit: u32) -> PageRequest {
    PageRequest::new(limit, None)
}

async fn a_created_order_reads_back_exactly(store: &dyn OrderStore) {
    let created = store.create(new_order("Ada"), None).await.expect("create");
    assert!(!created.replayed);
    let order = created.order;
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.tracking_number, None);
    assert_eq!(order.total_amount.to_string(), "1000040.27");
    let read = store
        .get(order_id(&order.id))
        .await
        .expect("get")
        .expect("exists");
    // Money exact to the cent, timestamps to the microsecond, items in their order.
    assert_eq!(read, order);
    let names: Vec<&str> = read.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["Desk Lamp", "Bulb", "Gold Desk"]);
}

async fn ids_are_ascending_digit_strings(store: &dyn OrderStore) {
    let mut previous = 0_u64;
    for n in 0..3 {
        let id = store
            .create(new_order(&format!("Customer {n}")), None)
            .await
            .expect("create")
            .order
            .id
            .clone();
        assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
        let sequence: u64 = id.parse().expect("digits");
        assert!(sequence > previous, "{sequence} after {previous}");
        previous = sequence;
    }
}

async fn lists_pages_in_creation_order(store: &dyn OrderStore) {
    let mut ids = Vec::new();
    for n in 0..5 {
        let created = store
            .create(new_order(&format!("Customer {n}")), None)
            .await
            .expect("create");
        ids.push(created.order.id.clone());
    }
    let mut seen = Vec::new();
    let mut page = first_page(2);
    let mut sizes = Vec::new();
    loop {
        let result = store.list(page).await.expect("list");
        sizes.push(result.orders.len());
        seen.extend(result.orders.iter().map(|o| o.id.clone()));
        assert!(result.orders.iter().all(|o| o.items.len() == 3));
        page.after = Some(Cursor::At(result.resume));
        if !result.more {
            break;
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(sizes, [2, 2, 1]);
    // The last page's position resumes with exactly what is created later.
    let end = page.after;
    let nothing = store.list(PageRequest::new(10, end)).await.expect("list");
    assert!(nothing.orders.is_empty() && !nothing.more);
    let later = store
        .create(new_order("Later"), None)
        .await
        .expect("create");
    let resumed = store.list(PageRequest::new(10, end)).await.expect("list");
    assert_eq!(resumed.orders, [Arc::clone(&later.order)]);
    assert!(!resumed.more);
    // The id of the last order seen, the cursor of earlier versions, continues after it.
    let legacy = |id: &str| Some(Cursor::AfterOrder(id.parse().expect("digits")));
    let after_second = store
        .list(PageRequest::new(2, legacy(&ids[1])))
        .await
        .expect("list");
    let after_second: Vec<&str> = after_second.orders.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(after_second, [ids[2].as_str(), ids[3].as_str()]);
    // Past the last order there is nothing.
    let beyond = store
        .list(PageRequest::new(10, legacy(&later.order.id)))
        .await
        .expect("list");
    assert!(beyond.orders.is_empty() && !beyond.more);
    // A page that holds exactly the rest has no next page.
    let exact = store.list(first_page(6)).await.expect("list");
    assert_eq!(exact.orders.len(), 6);
    assert!(!exact.more);
}

async fn an_idempotent_retry_replays_the_first_order(store: &dyn OrderStore) {
    let order = new_order("Retry Ruth");
    let first = store
        .create(order.clone(), key("key-1", &order))
        .await
        .expect("first");
    let retry = store
        .create(order.clone(), key("key-1", &order))
        .await
        .expect("retry");
    assert!(!first.replayed);
    assert!(retry.replayed);
    assert_eq!(retry.order, first.order);
    let all = store.list(first_page(10)).await.expect("list");
    assert_eq!(all.orders.len(), 1, "a retry creates nothing");
}

async fn a_key_reused_for_another_request_is_rejected(store: &dyn OrderStore) {
    let order = new_order("Key Owner");
    store
        .create(order.clone(), key("key-2", &order))
        .await
        .expect("first");
    let other = new_order("Someone Else");
    let reused = store
        .create(
            other.clone(),
            Some(Idempotency {
                scope: "client-a".into(),
                key: "key-2".into(),
                fingerprint: other.fingerprint(),
            }),
        )
        .await;
    assert!(
        matches!(reused, Err(StoreError::IdempotencyMismatch)),
        "{reused:?}"
    );
    let all = store.list(first_page(10)).await.expect("list");
    assert_eq!(all.orders.len(), 1);
}

async fn status_changes_are_compare_and_set(store: &dyn OrderStore) {
    let id = store
        .create(new_order("Cas"), None)
        .await
        .expect("create")
        .order
        .id
        .clone();
    let change = |from, to, tracking: Option<&str>| StatusChange {
        from: vec![from],
        to,
        tracking_number: tracking.map(str::to_owned),
        versions: None,
    };
    let processing = store
        .set_status(
            order_id(&id),
            change(OrderStatus::Pending, OrderStatus::Processing, None),
        )
        .await
        .expect("pending -> processing");
    assert_eq!(processing.status, OrderStatus::Processing);
    assert_eq!(processing.items.len(), 3);

    let stale = store
        .set_status(
            order_id(&id),
            change(OrderStatus::Pending, OrderStatus::Cancelled, None),
        )
        .await;
    assert!(
        matches!(
            &stale,
            Err(StoreError::StatusConflict { current }) if current.status == OrderStatus::Processing
        ),
        "{stale:?}"
    );

    let shipped = store
        .set_status(
            order_id(&id),
            change(
                OrderStatus::Processing,
                OrderStatus::Shipped,
                Some("1Z999AA1"),
            ),
        )
        .await
        .expect("processing -> shipped");
    assert_eq!(shipped.tracking_number.as_deref(), Some("1Z999AA1"));
    // A change without a tracking number keeps the one already set.
    let delivered = store
        .set_status(
            order_id(&id),
            change(OrderStatus::Shipped, OrderStatus::Delivered, None),
        )
        .await
        .expect("shipped -> delivered");
    assert_eq!(delivered.tracking_number.as_deref(), Some("1Z999AA1"));
    let read = store
        .get(order_id(&id))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(read, delivered);
    assert_eq!(
        [processing.version, shipped.version, delivered.version],
        [2, 3, 4],
        "every change bumps the version, in every store alike"
    );
}

/// `If-Match` becomes a condition of the one write: a change for another version changes
/// nothing and reports the order as it is.
async fn a_change_can_be_conditional_on_the_version(store: &dyn OrderStore) {
    let created = store
        .create(new_order("Versioned"), None)
        .await
        .expect("create");
    assert_eq!(created.order.version, 1);
    let id = &created.order.id;
    let at = |versions: Vec<u64>| StatusChange {
        from: vec![OrderStatus::Pending],
        to: OrderStatus::Processing,
        tracking_number: None,
        versions: Some(versions),
    };
    let stale = store.set_status(order_id(id), at(vec![7])).await;
    assert!(
        matches!(&stale, Err(StoreError::StatusConflict { current })
            if current.version == 1 && current.status == OrderStatus::Pending),
        "{stale:?}"
    );
    let changed = store
        .set_status(order_id(id), at(vec![3, 1]))
        .await
        .expect("version 1 matches");
    assert_eq!(
        (changed.status, changed.version),
        (OrderStatus::Processing, 2)
    );
    let read = store.get(order_id(id)).await.expect("get").expect("exists");
    assert_eq!(read.version, 2);
}

async fn unknown_orders_are_not_found(store: &dyn OrderStore) {
    // Past PostgreSQL's bigint, yet an id.
    for id in ["1", "999", "9999999999999999999"] {
        let id = order_id(id);
        assert_eq!(store.get(id).await.expect("get"), None, "{id:?}");
        let change = StatusChange {
            from: vec![OrderStatus::Pending],
            to: OrderStatus::Processing,
            tracking_number: None,
            versions: None,
        };
        let result = store.set_status(id, change).await;
        assert!(
            matches!(result, Err(StoreError::NotFound)),
            "{id:?}: {result:?}"
        );
    }
    // What no order can have never reaches a store.
    for text in ["0", "abc", "-1", "99999999999999999999", ""] {
        assert_eq!(OrderId::parse(text), None, "{text:?}");
    }
    let empty = store.list(first_page(10)).await.expect("list");
    assert!(empty.orders.is_empty() && !empty.more);
}

async fn seeding_keeps_ids_and_order_and_new_ids_follow(store: &dyn OrderStore) {
    let samples = sample_orders(Utc::now());
    store.seed(samples.clone()).await.expect("seed");
    // Seeding again changes nothing.
    store.seed(samples.clone()).await.expect("seed again");
    let listed = store.list(first_page(10)).await.expect("list");
    let listed_orders: Vec<_> = listed.orders.iter().map(|o| (**o).clone()).collect();
    assert_eq!(listed_orders, samples);
    let ids: Vec<&str> = listed.orders.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3"]);
    let next = store
        .create(new_order("After Seed"), None)
        .await
        .expect("create")
        .order;
    assert_eq!(next.id, "4");
}

async fn seeding_leaves_a_store_with_orders_alone(store: &dyn OrderStore) {
    let existing = store
        .create(new_order("Already Here"), None)
        .await
        .expect("create")
        .order;
    store.seed(sample_orders(Utc::now())).await.expect("seed");
    let listed = store.list(first_page(10)).await.expect("list");
    assert_eq!(listed.orders, vec![existing]);
}

async fn ping_answers(store: &dyn OrderStore) {
    store.ping().await.expect("ping");
}

async fn a_replay_answers_the_order_as_first_created(store: &dyn OrderStore) {
    let order = new_order("Replay Rita");
    let first = store
        .create(order.clone(), key("key-3", &order))
        .await
        .expect("first");
    let change = StatusChange {
        from: vec![OrderStatus::Pending],
        to: OrderStatus::Processing,
        tracking_number: Some("TRACK-1".into()),
        versions: None,
    };
    let changed = store
        .set_status(order_id(&first.order.id), change)
        .await
        .expect("change");
    assert_eq!(changed.status, OrderStatus::Processing);
    let retry = store
        .create(order.clone(), key("key-3", &order))
        .await
        .expect("retry");
    assert!(retry.replayed);
    // The first response, not today's order.
    assert_eq!(retry.order, first.order);
    assert_eq!(retry.order.status, OrderStatus::Pending);
    assert_eq!(retry.order.tracking_number, None);
}

async fn idempotency_keys_are_scoped_per_credential(store: &dyn OrderStore) {
    let scoped = |scope: &str, order: &NewOrder| {
        Some(Idempotency {
            scope: scope.into(),
            key: "shared-key".into(),
            fingerprint: order.fingerprint(),
        })
    };
    let (a, b) = (new_order("Client A"), new_order("Client B"));
    let first_a = store.create(a.clone(), scoped("a", &a)).await.expect("a");
    // Another credential with the same key and another body: its own order, no conflict.
    let first_b = store.create(b.clone(), scoped("b", &b)).await.expect("b");
    assert!(!first_b.replayed);
    assert_ne!(first_a.order.id, first_b.order.id);
    let retry_a = store
        .create(a.clone(), scoped("a", &a))
        .await
        .expect("a again");
    let retry_b = store
        .create(b.clone(), scoped("b", &b))
        .await
        .expect("b again");
    assert!(retry_a.replayed && retry_b.replayed);
    assert_eq!(retry_a.order.id, first_a.order.id);
    assert_eq!(retry_b.order.id, first_b.order.id);
}

async fn an_expired_key_creates_a_new_order(store: &dyn OrderStore) {
    let order = new_order("Late Larry");
    let first = store
        .create(order.clone(), key("key-4", &order))
        .await
        .expect("first");
    tokio::time::sleep(KEY_TTL + std::time::Duration::from_millis(300)).await;
    let late = store
        .create(order.clone(), key("key-4", &order))
        .await
        .expect("after expiry");
    assert!(!late.replayed);
    assert_ne!(late.order.id, first.order.id);
    // And the new use of the key replays from now on.
    let retry = store
        .create(order.clone(), key("key-4", &order))
        .await
        .expect("retry");
    assert!(retry.replayed);
    assert_eq!(retry.order.id, late.order.id);
}
