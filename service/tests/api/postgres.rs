//! The PostgreSQL store beyond the shared contract: migrations, schema isolation, concurrency,
//! credential rotation, and the real binary through a database outage and a restart.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use order_service::domain::OrderStatus;
use order_service::store::{
    CredentialRefresher, Cursor, Idempotency, OrderStore, PageRequest, PostgresStore, StatusChange,
    StoreError,
};
use order_service::{build_state_with_aws, router, Config, Target};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::store_contract::new_order;
use crate::support::binary::Service;
use crate::support::moto::Moto;
use crate::support::postgres::{server_log, Cluster, TestDb};
use crate::support::{self, order_id, request, send};

const TABLES: [&str; 4] = [
    "_sqlx_migrations",
    "idempotency_keys",
    "order_items",
    "orders",
];

async fn tables_in(db: &TestDb, schema: &str) -> Vec<String> {
    db.column(&format!(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = '{schema}' ORDER BY table_name"
    ))
    .await
}

fn all(limit: u32) -> PageRequest {
    PageRequest::new(limit, None)
}

#[tokio::test]
async fn migrations_applied_twice_change_nothing() {
    let db = TestDb::new().await;
    let first = db.store("public").await;
    let id = first
        .create(new_order("Before"), None)
        .await
        .expect("create")
        .order
        .id
        .clone();
    let second = db.store("public").await;
    assert_eq!(
        second
            .get(order_id(&id))
            .await
            .expect("get")
            .map(|o| o.customer_name.clone()),
        Some("Before".to_owned())
    );
    let applied = db
        .column("SELECT version::text FROM _sqlx_migrations WHERE success")
        .await;
    assert_eq!(applied, ["1", "2", "3", "4", "5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrate_runs_all_succeed_on_one_fresh_schema() {
    let db = Arc::new(TestDb::new().await);
    let config = support::postgres::database_config("fresh_start");
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let (url, config) = (SecretString::from(db.url()), config.clone());
            tokio::spawn(async move { PostgresStore::migrate(&config, &url).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for run in runs {
        outcomes.push(run.await.expect("task").expect("every run succeeds"));
    }
    let newest = order_service::store::required_schema_version();
    // One run applied everything; the others found nothing left to do.
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            (0, newest),
            (newest, newest),
            (newest, newest),
            (newest, newest)
        ]
    );
    assert_eq!(tables_in(&db, "fresh_start").await, TABLES);
    assert!(tables_in(&db, "public").await.is_empty());
    let store = db
        .store_with(&db.url(), "fresh_start", None)
        .await
        .expect("connects");
    store
        .create(new_order("Shared"), None)
        .await
        .expect("create");
}

/// Serving runs no DDL and takes no lock: a service starts at once while a migration holds
/// the migration lock, and refuses a schema older than it needs with one line naming both
/// versions.
#[tokio::test]
async fn starting_checks_the_schema_version_and_takes_no_lock() {
    let db = TestDb::new().await;
    let newest = order_service::store::required_schema_version();
    let unmigrated = db.store_with(&db.url(), "public", None).await;
    let error = unmigrated
        .err()
        .expect("an unmigrated schema is refused")
        .to_string();
    assert_eq!(
        error,
        format!(
            "database schema public is at version 0, this build needs version {newest}: \
             run `order-service migrate` first"
        )
    );
    // No table was created by the attempt.
    assert!(tables_in(&db, "public").await.is_empty());
    db.migrate("public").await;
    db.execute("DELETE FROM _sqlx_migrations WHERE version > 2")
        .await;
    let old = db.store_with(&db.url(), "public", None).await;
    let error = old.err().expect("an older schema is refused").to_string();
    assert!(
        error.contains("at version 2, this build needs version"),
        "{error}"
    );
    db.migrate("public").await;
    let _holder = hold_migration_lock(&db).await;
    let store = tokio::time::timeout(
        Duration::from_secs(20),
        db.store_with(&db.url(), "public", None),
    )
    .await
    .expect("starting does not wait for the migration lock")
    .expect("connects");
    store
        .create(new_order("During"), None)
        .await
        .expect("serves while the lock is held");
}

/// A session holding the lock a migration in progress holds (MIGRATION_LOCK_ID).
async fn hold_migration_lock(db: &TestDb) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut holder = sqlx::PgConnection::connect(&db.url())
        .await
        .expect("connect");
    sqlx::query("SELECT pg_advisory_lock(122537101324915)")
        .execute(&mut holder)
        .await
        .expect("take the lock");
    holder
}

#[tokio::test]
async fn schemas_keep_stores_apart() {
    let db = TestDb::new().await;
    let preview_a = db.store("preview_a").await;
    let preview_b = db.store("preview_b").await;
    let a = preview_a
        .create(new_order("Only In A"), None)
        .await
        .expect("create")
        .order;
    assert_eq!(a.id, "1");
    assert!(preview_b
        .list(all(10))
        .await
        .expect("list")
        .orders
        .is_empty());
    assert_eq!(preview_b.get(order_id("1")).await.expect("get"), None);
    let b = preview_b
        .create(new_order("Only In B"), None)
        .await
        .expect("create")
        .order;
    assert_eq!(b.id, "1", "each schema has its own id sequence");
    assert_eq!(preview_a.get(order_id("1")).await.expect("get"), Some(a));
    assert_eq!(tables_in(&db, "preview_a").await, TABLES);
    assert_eq!(tables_in(&db, "preview_b").await, TABLES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_creates_one_order_under_concurrency() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store("public").await);
    let order = new_order("Racing Retries");
    let creates: Vec<_> = (0..20)
        .map(|_| {
            let (store, order) = (Arc::clone(&store), order.clone());
            tokio::spawn(async move {
                let idempotency = Idempotency {
                    scope: "client-a".into(),
                    key: "same-key".into(),
                    fingerprint: order.fingerprint(),
                };
                store.create(order, Some(idempotency)).await
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut fresh = 0;
    for create in creates {
        let created = create.await.expect("task").expect("create or replay");
        fresh += usize::from(!created.replayed);
        ids.push(created.order.id.clone());
    }
    assert_eq!(fresh, 1, "exactly one request created the order");
    ids.dedup();
    assert_eq!(ids.len(), 1, "every response names the same order: {ids:?}");
    assert_eq!(store.list(all(50)).await.expect("list").orders.len(), 1);
}

fn keyed(key: &str, order: &order_service::domain::NewOrder) -> Option<Idempotency> {
    Some(Idempotency {
        scope: "client-a".into(),
        key: key.into(),
        fingerprint: order.fingerprint(),
    })
}

/// A retry with a key already used is answered by a read: no insert is attempted, so no id
/// is drawn from the sequence, and the next new order gets the next id.
#[tokio::test]
async fn a_retry_with_a_known_key_is_a_read_and_draws_no_id() {
    let db = TestDb::new().await;
    let store = db.store("public").await;
    let order = new_order("Retried");
    let first = store
        .create(order.clone(), keyed("retry-1", &order))
        .await
        .expect("create");
    for _ in 0..3 {
        let retry = store
            .create(order.clone(), keyed("retry-1", &order))
            .await
            .expect("replay");
        assert!(retry.replayed);
    }
    let next = store.create(new_order("Next"), None).await.expect("create");
    let first_id: u64 = first.order.id.parse().expect("digits");
    assert_eq!(
        next.order.id,
        (first_id + 1).to_string(),
        "retries drew no ids"
    );
}

/// Expired keys are deleted by a background sweep in batches, not by a DELETE in front of
/// every keyed create; and a key past its time to live that the sweep has not reached yet
/// lets a new order take it over (201, not a replay, never a 500).
#[tokio::test]
async fn expired_keys_are_swept_in_the_background_not_on_the_request_path() {
    let db = TestDb::new().await;
    let store = db.store("public").await;
    let old = new_order("Old");
    store
        .create(old.clone(), keyed("old-key", &old))
        .await
        .expect("create");
    db.execute("UPDATE idempotency_keys SET created_at = now() - interval '2 days'")
        .await;
    let keys = || db.column("SELECT key FROM idempotency_keys ORDER BY key");
    // Another keyed create leaves the expired key where it is.
    let other = new_order("Other");
    store
        .create(other.clone(), keyed("other-key", &other))
        .await
        .expect("create");
    assert_eq!(keys().await, ["old-key", "other-key"]);
    // The expired key, used again, creates a new order.
    let again = store
        .create(old.clone(), keyed("old-key", &old))
        .await
        .expect("create");
    assert!(!again.replayed, "an expired key never replays");
    assert_eq!(keys().await, ["old-key", "other-key"]);
    // Expire both again; the sweep deletes them without any request.
    db.execute("UPDATE idempotency_keys SET created_at = now() - interval '2 days'")
        .await;
    let swept = db
        .store("public")
        .await
        .with_key_expiry(Duration::from_millis(50));
    for _ in 0..400 {
        if keys().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        keys().await.is_empty(),
        "the sweep deleted the expired keys"
    );
    drop(swept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_status_changes_have_exactly_one_winner() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store("public").await);
    for round in 0..10 {
        let id = store
            .create(new_order(&format!("Round {round}")), None)
            .await
            .expect("create")
            .order
            .id
            .clone();
        let change = |to| {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move {
                let change = StatusChange {
                    from: vec![OrderStatus::Pending],
                    to,
                    tracking_number: None,
                    versions: None,
                };
                store.set_status(order_id(&id), change).await
            })
        };
        let process = change(OrderStatus::Processing);
        let cancel = change(OrderStatus::Cancelled);
        let results = [process.await.expect("task"), cancel.await.expect("task")];
        let winners: Vec<OrderStatus> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|o| o.status))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let loser = results.iter().find(|r| r.is_err()).expect("one loses");
        assert!(
            matches!(loser, Err(StoreError::StatusConflict { current }) if current.status == winners[0]),
            "round {round}: {loser:?}"
        );
        let stored = store
            .get(order_id(&id))
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(stored.status, winners[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_patches_answer_one_200_and_one_409() {
    let db = TestDb::new().await;
    db.migrate("public").await;
    let url = db.url();
    let app = router(support::state_with(&[("STORE", "postgres"), ("DATABASE_URL", &url)]).await);
    let id = support::create(&app, &support::new_order("Http")).await;
    let path = format!("/orders/{id}");
    let patch = |status: &str| {
        let (app, path, body) = (app.clone(), path.clone(), json!({ "status": status }));
        tokio::spawn(
            async move { send(&app, request(Method::PATCH, &path, &[], Some(&body))).await },
        )
    };
    // From PROCESSING, SHIPPED and CANCELLED exclude each other in either order, so exactly one
    // of two racing requests can win whichever runs first.
    assert_eq!(
        patch("PROCESSING").await.expect("task").status,
        StatusCode::OK
    );
    let (process, cancel) = (patch("SHIPPED"), patch("CANCELLED"));
    let replies = [process.await.expect("task"), cancel.await.expect("task")];
    let mut statuses: Vec<StatusCode> = replies.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let conflict = replies
        .iter()
        .find(|r| r.status == StatusCode::CONFLICT)
        .expect("one conflict");
    conflict.problem(StatusCode::CONFLICT);
}

#[tokio::test]
async fn postgres_without_a_database_url_does_not_start() {
    let vars = [("STORE", "postgres")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_vars(&vars).expect("valid config");
    let error = order_service::build_state(config, Target::Container)
        .await
        .err()
        .expect("refuses to start");
    assert!(error.to_string().contains("DATABASE_URL"), "{error}");
}

/// Hands out the rotated URL, counting the calls.
struct RotatedSecret {
    url: String,
    calls: AtomicUsize,
}

#[async_trait]
impl CredentialRefresher for RotatedSecret {
    async fn refresh_database_url(&self) -> Option<SecretString> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Some(SecretString::from(self.url.clone()))
    }
}

/// A role `app` with the password `first-password`, which the rotation tests change.
async fn create_app_role(db: &TestDb) {
    db.execute(&format!(
        "CREATE ROLE app LOGIN PASSWORD 'first-password';
         GRANT ALL ON DATABASE {} TO app;",
        db.name
    ))
    .await;
}

#[tokio::test]
async fn rejected_credentials_are_refreshed_once_and_used() {
    let db = TestDb::new().await;
    create_app_role(&db).await;
    let rotated = Arc::new(RotatedSecret {
        url: db.cluster.url_as("app", "second-password", &db.name),
        calls: AtomicUsize::new(0),
    });
    db.migrate_with(
        &db.cluster.url_as("app", "first-password", &db.name),
        "rotation",
    )
    .await;
    let store = db
        .store_with(
            &db.cluster.url_as("app", "first-password", &db.name),
            "rotation",
            Some(rotated.clone()),
        )
        .await
        .expect("connects with the first password");
    let id = store
        .create(new_order("Rotation"), None)
        .await
        .expect("create")
        .order
        .id
        .clone();

    // The secret rotates: the old password stops working and open sessions end.
    db.execute(
        "ALTER ROLE app PASSWORD 'second-password';
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app';",
    )
    .await;

    let mut failures = Vec::new();
    let order = loop {
        match store.get(order_id(&id)).await {
            Ok(order) => break order,
            Err(StoreError::Unavailable(cause)) if failures.len() < 20 => {
                failures.push(cause.to_string());
            }
            Err(other) => panic!("{other:?} after {failures:?}"),
        }
    };
    assert_eq!(
        order.map(|o| o.customer_name.clone()),
        Some("Rotation".to_owned())
    );
    assert!(!failures.is_empty(), "the old password was rejected first");
    assert_eq!(rotated.calls.load(Ordering::SeqCst), 1, "{failures:?}");
}

/// A role `app` whose password rotates, a secret in moto holding its URL (`database_url`: the
/// server of these tests speaks no TLS; an RDS-format secret asks for verify-full, which
/// `an_rds_secret_connects_only_to_a_server_its_cas_vouch_for` covers), and the service's
/// state built from that secret.
struct Rotation {
    db: TestDb,
    moto: Moto,
    state: order_service::AppState,
}

impl Rotation {
    async fn start(extra: &[(&str, &str)]) -> Rotation {
        let db = TestDb::new().await;
        create_app_role(&db).await;
        db.migrate_with(
            &db.cluster.url_as("app", "first-password", &db.name),
            "rotation",
        )
        .await;
        let moto = Moto::start().await;
        let secret =
            json!({ "database_url": db.cluster.url_as("app", "first-password", &db.name) });
        moto.create_secret("app/db", &secret.to_string()).await;
        let vars = [
            ("ENVIRONMENT", "local"),
            ("STORE", "postgres"),
            ("DB_SCHEMA", "rotation"),
            ("SECRETS_MANAGER_ENABLED", "true"),
            ("AWS_SECRET_NAME", "app/db"),
            ("AWS_REGION", "us-east-1"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = Config::from_vars(&vars).expect("valid config");
        let state = build_state_with_aws(config, Target::Container, Some(moto.sdk_config().await))
            .await
            .expect("connects with the secret's credentials");
        Rotation { db, moto, state }
    }

    /// The secret's text for the role's `password`.
    fn secret(&self, password: &str) -> String {
        json!({ "database_url": self.db.cluster.url_as("app", password, &self.db.name) })
            .to_string()
    }
}

/// A rotation done in the usual order (the role's new password first, then the secret) costs
/// no request: once a refresh loads the new secret, new connections use its URL, before any
/// connection could be refused. Before, the pool learnt the new URL only from an
/// authentication failure, a 503 per pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_credential_rotation_costs_no_request() {
    let rotation =
        Rotation::start(&[("DB_MAX_CONNECTIONS", "8"), ("SECRET_REFRESH_SECONDS", "1")]).await;
    let (db, moto, state) = (&rotation.db, &rotation.moto, rotation.state.clone());
    let rds_secret = |password: &str| rotation.secret(password);
    let loader = state.secrets.clone().expect("the secret is loaded");
    let app = router(state);
    let id = support::create(&app, &support::new_order("Steady")).await;
    let path = format!("/orders/{id}");
    // Steady load on few connections, while the password changes and then the secret.
    let failures = Arc::new(AtomicUsize::new(0));
    let burst = |width: usize| {
        let (app, path, failures) = (app.clone(), path.clone(), Arc::clone(&failures));
        async move {
            let requests: Vec<_> = (0..width)
                .map(|_| {
                    let (app, path) = (app.clone(), path.clone());
                    tokio::spawn(async move { support::get(&app, &path).await.status })
                })
                .collect();
            for request in requests {
                if request.await.expect("task") != StatusCode::OK {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    };
    burst(1).await;
    db.execute("ALTER ROLE app PASSWORD 'second-password'")
        .await;
    burst(1).await;
    moto.put_secret("app/db", &rds_secret("second-password"))
        .await;
    let rotated = |url: Option<SecretString>| {
        url.is_some_and(|u| secrecy::ExposeSecret::expose_secret(&u).contains("second-password"))
    };
    for _ in 0..200 {
        if rotated(loader.database_url()) {
            break;
        }
        burst(1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        rotated(loader.database_url()),
        "the refresh loaded the new secret"
    );
    // The pool's switch is published with the secret; give its task a moment to run.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Wider bursts need new connections, which must use the new password.
    for _ in 0..5 {
        burst(8).await;
    }
    let opened: Vec<String> = db
        .column("SELECT count(*)::text FROM pg_stat_activity WHERE usename = 'app'")
        .await;
    assert!(
        opened[0].parse::<u32>().unwrap_or_default() > 1,
        "the bursts opened new connections: {opened:?}"
    );
    assert_eq!(failures.load(Ordering::SeqCst), 0, "no request failed");
}

/// A URL built from an RDS secret verifies the server: TLS, a certificate from a trusted CA
/// (the RDS CAs the binary carries, and those of `DB_CA_BUNDLE`), for the host named. The
/// test's server has a certificate from a CA made here: refused unless that CA is configured.
#[tokio::test]
async fn an_rds_secret_connects_only_to_a_server_its_cas_vouch_for() {
    let (cluster, ca) = Cluster::start_tls();
    let secret = json!({
        "engine": "postgres",
        "host": "localhost",
        "port": cluster.port,
        "username": "postgres",
        "password": "test-superuser-password",
        "dbname": "postgres",
    })
    .to_string();
    let url = order_service::secrets::parse(&secret)
        .expect("valid secret")
        .database_url
        .expect("a URL");
    let mut config = support::postgres::database_config("public");
    let refused = PostgresStore::migrate(&config, &url).await;
    let error = refused.expect_err("an unknown CA is refused").to_string();
    assert!(error.contains("cannot reach the database"), "{error}");
    config.ca_bundle = Some(std::fs::read(&ca).expect("CA").into());
    PostgresStore::migrate(&config, &url)
        .await
        .expect("the configured CA vouches for the server");
    let store = PostgresStore::connect(&config, url, None)
        .await
        .expect("connects");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut *store.connection().await.expect("a connection"))
            .await
            .expect("query");
    assert!(encrypted);
}

#[tokio::test]
async fn a_rotated_runtime_secret_reconnects_the_service() {
    let rotation = Rotation::start(&[]).await;
    let (db, moto, state) = (&rotation.db, &rotation.moto, rotation.state.clone());
    let rds_secret = |password: &str| rotation.secret(password);
    let app = router(state);
    let id = support::create(&app, &support::new_order("Rotated")).await;
    let path = format!("/orders/{id}");

    // Rotation: a new secret version, the old password rejected, open sessions ended.
    moto.put_secret("app/db", &rds_secret("second-password"))
        .await;
    db.execute(
        "ALTER ROLE app PASSWORD 'second-password';
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app';",
    )
    .await;

    let mut unavailable = 0;
    loop {
        let reply = support::get(&app, &path).await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.json()["customer_name"], "Rotated");
            break;
        }
        reply.problem(StatusCode::SERVICE_UNAVAILABLE);
        unavailable += 1;
        assert!(unavailable < 20, "still rejected after {unavailable} tries");
    }
}

/// Polls `check` every 100 ms until it holds, failing after a minute.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

#[tokio::test]
async fn orders_survive_a_restart_of_the_service() {
    let db = TestDb::new().await;
    db.migrate("public").await;
    let url = db.url();
    let vars = [
        ("STORE", "postgres"),
        ("DATABASE_URL", url.as_str()),
        ("SHUTDOWN_DRAIN_SECONDS", "0"),
    ];
    let client = http_client();
    let mut service = Service::start(&vars);
    let mut created = Vec::new();
    for n in 0..3 {
        let reply = client
            .post(service.url("/orders"))
            .json(&support::new_order(&format!("Durable {n}")))
            .send()
            .await
            .expect("post");
        assert_eq!(reply.status(), StatusCode::CREATED);
        created.push(reply.json::<Value>().await.expect("json"));
    }
    service.terminate();
    assert!(service.wait(Duration::from_secs(60)).success());

    let service = Service::start(&vars);
    for order in &created {
        let path = format!("/orders/{}", order["id"].as_str().expect("id"));
        let reply = client.get(service.url(&path)).send().await.expect("get");
        assert_eq!(reply.status(), StatusCode::OK);
        assert_eq!(&reply.json::<Value>().await.expect("json"), order);
    }
    let listed: Value = client
        .get(service.url("/orders"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(3));
}

/// What one POST got back.
struct Outcome {
    phase: usize,
    status: u16,
    content_type: String,
    id: Option<String>,
    customer: String,
}

const UP: usize = 0;
const DOWN: usize = 1;
const BACK: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_loses_no_acknowledged_order() {
    let cluster = Arc::new(Cluster::start());
    let db = TestDb::on(Arc::clone(&cluster)).await;
    db.migrate("public").await;
    let url = db.url();
    let service = Service::start(&[
        ("STORE", "postgres"),
        ("DATABASE_URL", url.as_str()),
        ("DB_ACQUIRE_TIMEOUT_MS", "500"),
    ]);
    let client = http_client();

    // A steady write load, each outcome tagged with the phase it was sent in.
    let phase = Arc::new(AtomicUsize::new(UP));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let writer = {
        let (client, phase, outcomes) = (client.clone(), phase.clone(), outcomes.clone());
        let url = service.url("/orders");
        tokio::spawn(async move {
            for n in 0.. {
                let sent_in = phase.load(Ordering::SeqCst);
                if sent_in > BACK {
                    break;
                }
                let customer = format!("Load {n}");
                let reply = client
                    .post(&url)
                    .json(&support::new_order(&customer))
                    .send()
                    .await
                    .expect("the service answers");
                let status = reply.status().as_u16();
                let content_type = reply
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let body: Value = reply.json().await.unwrap_or(Value::Null);
                outcomes.lock().expect("outcomes").push(Outcome {
                    phase: sent_in,
                    status,
                    content_type,
                    id: body["id"].as_str().map(str::to_owned),
                    customer,
                });
            }
        })
    };
    let count = |phase: usize, status: u16| {
        outcomes
            .lock()
            .expect("outcomes")
            .iter()
            .filter(|o| o.phase == phase && o.status == status)
            .count()
    };

    eventually("orders created while the database is up", || {
        count(UP, 201) >= 5
    })
    .await;
    cluster.stop_server();
    phase.store(DOWN, Ordering::SeqCst);
    eventually("503 answers while the database is down", || {
        count(DOWN, 503) >= 5
    })
    .await;
    let ready = client
        .get(service.url("/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    cluster.start_server();
    phase.store(BACK, Ordering::SeqCst);
    eventually("orders created again after the database is back", || {
        count(BACK, 201) >= 5
    })
    .await;
    phase.store(BACK + 1, Ordering::SeqCst);
    writer.await.expect("writer");
    let ready = client
        .get(service.url("/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), StatusCode::OK);

    let outcomes = std::mem::take(&mut *outcomes.lock().expect("outcomes"));
    for outcome in &outcomes {
        match outcome.status {
            201 => {}
            503 => assert_eq!(outcome.content_type, "application/problem+json"),
            other => panic!(
                "{} got {other} in phase {}; service log: {:?}; database log: {}",
                outcome.customer,
                outcome.phase,
                service.logs(),
                server_log(&cluster)
            ),
        }
    }
    let acknowledged: Vec<&Outcome> = outcomes.iter().filter(|o| o.status == 201).collect();
    for outcome in acknowledged {
        let id = outcome.id.as_deref().expect("201 carries an id");
        let reply = client
            .get(service.url(&format!("/orders/{id}")))
            .send()
            .await
            .expect("get");
        assert_eq!(
            reply.status(),
            StatusCode::OK,
            "acknowledged order {id} lost"
        );
        let order: Value = reply.json().await.expect("json");
        assert_eq!(order["customer_name"], outcome.customer.as_str());
    }
}

/// PostgreSQL cannot store NUL in text; the memory store could. Both must answer the same
/// field-level 422, never a 500.
#[tokio::test]
async fn control_characters_are_422_on_both_stores() {
    let db = TestDb::new().await;
    db.migrate("public").await;
    let url = db.url();
    let memory = router(support::state_with(&[]).await);
    let postgres =
        router(support::state_with(&[("STORE", "postgres"), ("DATABASE_URL", &url)]).await);
    for app in [memory, postgres] {
        let mut body = support::new_order("Nul\u{0}Byte");
        body["items"][0]["name"] = json!("Lamp\u{1b}[31m");
        let reply = send(&app, request(Method::POST, "/orders", &[], Some(&body))).await;
        let problem = reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .expect("field errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert_eq!(fields, ["customer_name", "items[0].name"], "{problem}");
        let id = support::create(&app, &support::new_order("Clean")).await;
        let path = format!("/orders/{id}");
        let patch = json!({"status": "PROCESSING", "tracking_number": "1Z\u{0}"});
        let reply = send(&app, request(Method::PATCH, &path, &[], Some(&patch))).await;
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
}

/// A migration run that starts while another holds the migration lock for longer than any
/// statement timeout waits for it instead of being cancelled.
#[tokio::test]
async fn a_migrate_run_waits_on_the_migration_lock_beyond_the_statement_timeout() {
    let db = TestDb::new().await;
    let mut holder = hold_migration_lock(&db).await;
    let mut config = support::postgres::database_config("slow_start");
    config.statement_timeout = Duration::from_millis(500);
    let url = SecretString::from(db.url());
    let run = {
        let config = config.clone();
        tokio::spawn(async move { PostgresStore::migrate(&config, &url).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!run.is_finished(), "the run must still be waiting");
    sqlx::query("SELECT pg_advisory_unlock(122537101324915)")
        .execute(&mut holder)
        .await
        .expect("release the lock");
    run.await
        .expect("task")
        .expect("migrates once the lock is free");
    assert_eq!(tables_in(&db, "slow_start").await, TABLES);
    // Requests still run under the statement timeout.
    let store = PostgresStore::connect(&config, SecretString::from(db.url()), None)
        .await
        .expect("connects");
    let error = sqlx::query("SELECT pg_sleep(2)")
        .execute(&mut *store.connection().await.expect("a connection"))
        .await
        .expect_err("cancelled by statement_timeout");
    assert!(error.to_string().contains("statement timeout"), "{error}");
}

/// Creates of customers named `Slow…` hold their transaction open for `seconds` after taking
/// their id, as a slow disk or a distant standby would.
async fn slow_creates(db: &TestDb, seconds: f64) {
    db.execute(&format!(
        "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.customer_name LIKE 'Slow%' THEN PERFORM pg_sleep({seconds}); END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER slow_insert BEFORE INSERT ON orders
             FOR EACH ROW EXECUTE FUNCTION slow_insert();"
    ))
    .await;
}

/// A create whose commit is slow (a synchronous standby, a slow disk) holds nothing another
/// create waits for: creates from every replica commit in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_create_does_not_hold_up_other_creates() {
    let db = TestDb::new().await;
    let store: Arc<dyn OrderStore> = Arc::new(db.store("public").await);
    slow_creates(&db, 8.0).await;
    let slow = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.create(new_order("Slow"), None).await })
    };
    // The slow create is inside its insert, its transaction open.
    for _ in 0..600 {
        let sleeping = db
            .column("SELECT count(*)::text FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
            .await;
        if sleeping == ["1"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fast = store.create(new_order("Fast"), None).await.expect("create");
    assert!(
        !slow.is_finished(),
        "the fast create must commit while the slow one is still open"
    );
    let slow = slow.await.expect("task").expect("create");
    // The fast one drew its id after the slow one, and committed first.
    assert!(fast.order.id.parse::<u64>().ok() > slow.order.id.parse::<u64>().ok());
}

/// Creates commit in any order, yet a pager that follows the cursors it is handed, while
/// slow and fast creates race, sees every committed order exactly once. A pager ordered by
/// id alone would move past a slow create's smaller id once a later fast one committed, and
/// never list the slow order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pager_sees_every_order_once_under_slow_and_fast_concurrent_creates() {
    let db = TestDb::new().await;
    let store: Arc<dyn OrderStore> = Arc::new(db.store("public").await);
    slow_creates(&db, 0.15).await;
    let created = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for (prefix, tasks, each) in [("Slow", 2, 5), ("Fast", 3, 20)] {
        for task in 0..tasks {
            let (store, created) = (Arc::clone(&store), Arc::clone(&created));
            writers.push(tokio::spawn(async move {
                for n in 0..each {
                    let order = new_order(&format!("{prefix} {task}-{n}"));
                    let id = store
                        .create(order, None)
                        .await
                        .expect("create")
                        .order
                        .id
                        .clone();
                    created.lock().expect("lock").push(id);
                }
            }));
        }
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pager = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            let mut after = None;
            loop {
                // Read the flag first: a page read after it was set sees every order.
                let last_pass = done.load(Ordering::SeqCst);
                let page = store.list(PageRequest::new(3, after)).await.expect("list");
                after = Some(Cursor::At(page.resume));
                seen.extend(page.orders.iter().map(|o| o.id.clone()));
                if !page.more {
                    if last_pass {
                        return seen;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };
    for writer in writers {
        writer.await.expect("writer");
    }
    done.store(true, Ordering::SeqCst);
    let seen = pager.await.expect("pager");
    let mut created = created.lock().expect("lock").clone();
    assert_eq!(created.len(), 70);
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    sorted_seen.dedup();
    assert_eq!(sorted_seen.len(), seen.len(), "no order twice: {seen:?}");
    created.sort();
    assert_eq!(sorted_seen, created, "every order once");
}

/// Two clients (or one client and its retry) asking for the same change at the same moment
/// both get 200: the change they asked for happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_identical_patches_both_answer_200() {
    let db = TestDb::new().await;
    db.migrate("public").await;
    let url = db.url();
    let app = router(support::state_with(&[("STORE", "postgres"), ("DATABASE_URL", &url)]).await);
    for round in 0..5 {
        let body = support::new_order(&format!("Twin {round}"));
        let created = send(&app, request(Method::POST, "/orders", &[], Some(&body))).await;
        let path = format!("/orders/{}", created.json()["id"].as_str().expect("id"));
        let patches: Vec<_> = (0..4)
            .map(|_| {
                let (app, path) = (app.clone(), path.clone());
                let body = json!({"status": "PROCESSING"});
                tokio::spawn(async move {
                    send(&app, request(Method::PATCH, &path, &[], Some(&body))).await
                })
            })
            .collect();
        for patch in patches {
            let reply = patch.await.expect("task");
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{:?}",
                String::from_utf8_lossy(&reply.body)
            );
            assert_eq!(reply.json()["status"], "PROCESSING");
        }
    }
}

/// Waits until `count` statements of the database are inside `pg_sleep`.
async fn until_sleeping(db: &TestDb, count: usize) {
    let expected = count.to_string();
    for _ in 0..1000 {
        let sleeping = db
            .column("SELECT count(*)::text FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
            .await;
        if sleeping == [expected.as_str()] {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{count} statements never slept");
}

/// Waiting for a busy connection ends in a 503 with `Retry-After` once the pool's wait
/// target has passed, not when the connection is free again: here the only connection is
/// held by a create for seconds, and the refusal comes while it still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_that_waits_too_long_for_a_busy_connection_is_refused_with_retry_after() {
    let db = TestDb::new().await;
    db.migrate("public").await;
    slow_creates(&db, 3.0).await;
    let url = db.url();
    let app = router(
        support::state_with(&[
            ("STORE", "postgres"),
            ("DATABASE_URL", &url),
            ("DB_MAX_CONNECTIONS", "1"),
            ("DB_POOL_WAIT_TIMEOUT_MS", "100"),
        ])
        .await,
    );
    let slow = {
        let app = app.clone();
        let body = support::new_order("Slow Holder");
        tokio::spawn(
            async move { send(&app, request(Method::POST, "/orders", &[], Some(&body))).await },
        )
    };
    until_sleeping(&db, 1).await;
    let refused = send(&app, request(Method::GET, "/orders/1", &[], None)).await;
    refused.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        !slow.is_finished(),
        "refused while the connection was still busy, not after it came free"
    );
    let created = slow.await.expect("task");
    assert_eq!(created.status, StatusCode::CREATED);
    // The connection serves again once it is back.
    let id = created.json()["id"].as_str().expect("id").to_owned();
    let read = send(
        &app,
        request(Method::GET, &format!("/orders/{id}"), &[], None),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
}

/// A TCP relay to `to` that waits `delay` before it connects each client through, as a
/// database far away or busy authenticating takes its time to open a connection.
async fn slow_relay(to: u16, delay: Duration) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (port, task)
}

/// Opening a connection has its own timeout, longer than the wait for a busy one: after an
/// outage the pool reconnects although every new connection takes far longer to open than
/// the wait target allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_comes_back_is_reconnected_however_short_the_wait_target() {
    let cluster = Arc::new(Cluster::start());
    let db = TestDb::on(Arc::clone(&cluster)).await;
    let store = db.store("public").await;
    let created = store
        .create(new_order("Before"), None)
        .await
        .expect("create");
    drop(store);
    let (port, relay) = slow_relay(cluster.port, Duration::from_millis(300)).await;
    let url = db
        .url()
        .replace(&format!(":{}/", cluster.port), &format!(":{port}/"));
    let mut config = support::postgres::database_config("public");
    config.max_connections = 2;
    config.pool_wait_timeout = Duration::from_millis(20);
    let store = PostgresStore::connect(&config, SecretString::from(url), None)
        .await
        .expect("connects in 300 ms, beyond the 20 ms wait target");
    let id = created.order.id.clone();
    assert!(store.get(order_id(&id)).await.expect("read").is_some());

    cluster.stop_server();
    let down = store.get(order_id(&id)).await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    cluster.start_server();
    let back = store
        .get(order_id(&id))
        .await
        .expect("reconnected after the outage");
    assert_eq!(
        back.expect("the order").customer_name,
        created.order.customer_name
    );
    relay.abort();
}

/// A request cut short in the middle of a statement (its client went away) leaves its
/// connection with an answer still to come; the next request on that connection gets its own
/// answer, not the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_mid_statement_leaves_no_answer_for_the_next() {
    let db = TestDb::new().await;
    db.migrate("public").await;
    let mut config = support::postgres::database_config("public");
    config.max_connections = 1;
    let store = PostgresStore::connect(&config, SecretString::from(db.url()), None)
        .await
        .expect("connects");
    let first = store
        .create(new_order("First"), None)
        .await
        .expect("create");
    slow_creates(&db, 1.0).await;
    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        store.create(new_order("Slow Cancelled"), None),
    )
    .await;
    assert!(cancelled.is_err(), "the slow create was cut short");
    let read = store.get(order_id(&first.order.id)).await.expect("read");
    assert_eq!(read.expect("the order").customer_name, "First");
    let next = store.create(new_order("Next"), None).await.expect("create");
    assert_eq!(next.order.customer_name, "Next");
    let names = db
        .column("SELECT customer_name FROM orders ORDER BY seq")
        .await;
    assert_eq!(names, ["First", "Slow Cancelled", "Next"]);
}

/// Another request's create with the same key commits while this one's insert waits on the
/// key, and by then the key is past its time to live: this create's insert fails on the key,
/// and the key it reads next is expired. It creates the order (the expired key is taken over)
/// instead of failing with "idempotency key vanished".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_expires_between_two_steps_of_a_create_never_fails_it() {
    use sqlx::Connection;
    let db = TestDb::new().await;
    let store = Arc::new(db.store("public").await);
    let order = new_order("Raced");
    let idempotency = keyed("raced-key", &order).expect("key");
    let mut other = sqlx::PgConnection::connect(&db.url())
        .await
        .expect("connect");
    let mut other_tx = other.begin().await.expect("begin");
    let other_seq: i64 = sqlx::query_scalar(
        "INSERT INTO orders (customer_name, order_date, total_amount, status, shipping_address)
         VALUES ('Other', now(), 0, 'PENDING', '1 Other St') RETURNING seq",
    )
    .fetch_one(&mut *other_tx)
    .await
    .expect("other order");
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, order_seq, created_at)
         VALUES ($1, $2, $3, $4, now() - interval '2 days')",
    )
    .bind(&idempotency.scope)
    .bind(&idempotency.key)
    .bind(&idempotency.fingerprint)
    .bind(other_seq)
    .execute(&mut *other_tx)
    .await
    .expect("other key");
    let create = {
        let (store, order) = (Arc::clone(&store), order.clone());
        tokio::spawn(async move { store.create(order, Some(idempotency)).await })
    };
    // This create read no key (the other is uncommitted) and its insert waits on it.
    for _ in 0..1000 {
        let waiting = db
            .column(
                "SELECT count(*)::text FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE '%new_key%'",
            )
            .await;
        if waiting == ["1"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!create.is_finished(), "the create waits on the other's key");
    other_tx.commit().await.expect("commit");
    let created = create.await.expect("task").expect("no error");
    assert!(!created.replayed, "an expired key never replays");
    assert_eq!(created.order.customer_name, "Raced");
    let owner = db
        .column(
            "SELECT o.customer_name FROM idempotency_keys k JOIN orders o ON o.seq = k.order_seq
             WHERE k.key = 'raced-key'",
        )
        .await;
    assert_eq!(owner, ["Raced"], "the new order took the expired key over");
}
