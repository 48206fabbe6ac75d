//! The runtime secret against a real AWS Secrets Manager emulator (moto): loading, write keys,
//! rotation, failed refreshes, the Lambda's lazy refresh, start-up failures, and that no
//! secret value ever reaches a log line or Debug output.

use std::collections::HashMap;
use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use order_service::state::StartupError;
use order_service::App;
use order_service::{build_state_with_aws, router, AppState, Config, Target};
use secrecy::ExposeSecret;

use crate::support::binary::Service;
use crate::support::moto::Moto;
use crate::support::{get, new_order, request, send};

/// Every value below is secret: none may appear in any log line or Debug output.
const PASSWORD: &str = "S3cr3t-p@ss:w/rd?#%";
const KEY_ALPHA: &str = "key-alpha-7f3a9c";
const KEY_BETA: &str = "key-beta-91c2d4";
const KEY_GAMMA: &str = "key-gamma-5e8b0a";
const DB_URL_PASSWORD: &str = "dbpw-0b9d7e";
const SECRET_VALUES: &[&str] = &[PASSWORD, KEY_ALPHA, KEY_BETA, KEY_GAMMA, DB_URL_PASSWORD];

fn rds_secret(api_keys: &[&str]) -> String {
    serde_json::json!({
        "engine": "postgres",
        "host": "orders.cluster-abc.eu-west-1.rds.amazonaws.com",
        "port": 5432,
        "username": "order app",
        "password": PASSWORD,
        "dbname": "orders",
        "api_keys": api_keys,
    })
    .to_string()
}

/// State built as the shells build it, with Secrets Manager pointed at `moto`.
async fn state_for(
    moto: &Moto,
    secret_name: &str,
    target: Target,
    refresh: Option<Duration>,
) -> Result<AppState, StartupError> {
    let vars: HashMap<String, String> = [
        ("ENVIRONMENT", "staging"),
        ("SECRETS_MANAGER_ENABLED", "true"),
        ("AWS_SECRET_NAME", secret_name),
        ("AWS_REGION", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut config = Config::from_vars(&vars).expect("test config is valid");
    if let (Some(secrets), Some(refresh)) = (config.secrets.as_mut(), refresh) {
        secrets.refresh_interval = refresh;
    }
    build_state_with_aws(config, target, Some(moto.sdk_config().await)).await
}

fn counter(state: &AppState, result: &str) -> u64 {
    state
        .metrics
        .secrets_refresh
        .with_label_values(&[result])
        .get()
}

async fn create_order(app: &App, key: Option<&str>) -> StatusCode {
    let authorization = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = authorization
        .iter()
        .map(|value| ("authorization", value.as_str()))
        .collect();
    let body = new_order("Secret Tester");
    send(app, request(Method::POST, "/orders", &headers, Some(&body)))
        .await
        .status
}

/// Captures every tracing event of this test's thread (all levels) into a buffer.
struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufferWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    fn start() -> LogCapture {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || BufferWriter(Arc::clone(&writer)))
            .finish();
        LogCapture {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().expect("log buffer")).into_owned()
    }

    /// Asserts the captured lines hold none of the secret values, and that there were lines.
    fn assert_no_secret_values(&self) {
        let text = self.text();
        assert!(text.contains("runtime secret"), "nothing captured: {text}");
        assert_no_secret_values(&text);
    }
}

fn assert_no_secret_values(text: &str) {
    for value in SECRET_VALUES {
        assert!(!text.contains(value), "a secret value leaked:\n{text}");
    }
    // The percent-encoded password must not leak either.
    assert!(
        !text.contains("S3cr3t-p%40ss"),
        "a secret value leaked:\n{text}"
    );
}

#[tokio::test]
async fn rds_secret_becomes_an_encoded_database_url() {
    let moto = Moto::start().await;
    moto.create_secret("app/rds", &rds_secret(&[KEY_ALPHA]))
        .await;
    let logs = LogCapture::start();

    let state = state_for(&moto, "app/rds", Target::Container, None)
        .await
        .expect("state builds");
    let secrets = state.secrets.clone().expect("secrets enabled");
    let url = secrets.database_url().expect("database url");
    assert_eq!(
        url.expose_secret(),
        "postgres://order%20app:S3cr3t-p%40ss%3Aw%2Frd%3F%23%25\
         @orders.cluster-abc.eu-west-1.rds.amazonaws.com:5432/orders?sslmode=verify-full"
    );
    assert_eq!(get(&router(state.clone()), "/ready").await.status, 200);
    assert_eq!(counter(&state, "success"), 1);
    assert!(state.metrics.secrets_last_success.get() > 0.0);

    let debug = format!("{secrets:?} {url:?} {:?}", state.config);
    assert!(debug.contains("app/rds"), "{debug}");
    assert_no_secret_values(&debug);
    logs.assert_no_secret_values();
}

#[tokio::test]
async fn database_url_form_and_secret_binary_are_read() {
    let moto = Moto::start().await;
    let text = serde_json::json!({
        "database_url": format!("postgres://app:{DB_URL_PASSWORD}@db.internal:5432/orders"),
    })
    .to_string();
    moto.create_secret("app/url", &text).await;
    moto.create_binary_secret("app/binary", rds_secret(&[KEY_BETA]).as_bytes())
        .await;
    let logs = LogCapture::start();

    let state = state_for(&moto, "app/url", Target::Container, None)
        .await
        .expect("string secret loads");
    let url = state.secrets.as_ref().and_then(|s| s.database_url());
    assert_eq!(
        url.expect("database url").expose_secret(),
        format!("postgres://app:{DB_URL_PASSWORD}@db.internal:5432/orders")
    );

    let state = state_for(&moto, "app/binary", Target::Container, None)
        .await
        .expect("binary secret loads");
    let url = state.secrets.as_ref().and_then(|s| s.database_url());
    assert!(url
        .expect("database url")
        .expose_secret()
        .starts_with("postgres://order%20app:"));
    let app = router(state);
    assert_eq!(
        create_order(&app, Some(KEY_BETA)).await,
        StatusCode::CREATED
    );
    logs.assert_no_secret_values();
}

#[tokio::test]
async fn api_keys_from_the_secret_authorise_writes() {
    let moto = Moto::start().await;
    moto.create_secret("app/keys", &rds_secret(&[KEY_ALPHA, KEY_BETA]))
        .await;
    let logs = LogCapture::start();

    let app = router(
        state_for(&moto, "app/keys", Target::Container, None)
            .await
            .expect("state builds"),
    );
    assert_eq!(
        create_order(&app, Some(KEY_ALPHA)).await,
        StatusCode::CREATED
    );
    assert_eq!(
        create_order(&app, Some(KEY_BETA)).await,
        StatusCode::CREATED
    );
    assert_eq!(create_order(&app, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        create_order(&app, Some("not-a-key")).await,
        StatusCode::UNAUTHORIZED
    );
    logs.assert_no_secret_values();
}

#[tokio::test]
async fn rotation_takes_effect_at_the_next_refresh() {
    let moto = Moto::start().await;
    moto.create_secret("app/rotating", &rds_secret(&[KEY_ALPHA]))
        .await;
    let logs = LogCapture::start();
    let state = state_for(&moto, "app/rotating", Target::Container, None)
        .await
        .expect("state builds");
    let app = router(state.clone());
    assert_eq!(
        create_order(&app, Some(KEY_ALPHA)).await,
        StatusCode::CREATED
    );

    moto.put_secret("app/rotating", &rds_secret(&[KEY_GAMMA]))
        .await;
    // Until the refresh, the cached keys stay in force.
    assert_eq!(
        create_order(&app, Some(KEY_ALPHA)).await,
        StatusCode::CREATED
    );
    let secrets = state.secrets.clone().expect("secrets enabled");
    secrets.refresh().await.expect("refresh succeeds");

    assert_eq!(
        create_order(&app, Some(KEY_GAMMA)).await,
        StatusCode::CREATED
    );
    assert_eq!(
        create_order(&app, Some(KEY_ALPHA)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(counter(&state, "success"), 2);
    logs.assert_no_secret_values();
}

#[tokio::test]
async fn database_credential_refresh_returns_the_rotated_url() {
    use order_service::store::CredentialRefresher;

    let moto = Moto::start().await;
    moto.create_secret("app/db", &rds_secret(&[])).await;
    let state = state_for(&moto, "app/db", Target::Container, None)
        .await
        .expect("state builds");
    let secrets = state.secrets.clone().expect("secrets enabled");
    let rotated = rds_secret(&[]).replace(PASSWORD, "rotated-pw");
    moto.put_secret("app/db", &rotated).await;

    // Concurrent callers (many pooled connections failing at once) share one fetch: the
    // start-up fetch plus exactly one more, however many callers asked at once.
    let urls = futures_util::future::join_all((0..8).map(|_| secrets.refresh_database_url())).await;
    for url in urls {
        let url = url.expect("refreshed url");
        assert!(url.expose_secret().contains(":rotated-pw@"));
    }
    assert_eq!(
        counter(&state, "success"),
        2,
        "8 concurrent callers, fetches"
    );
}

#[tokio::test]
async fn failed_refresh_keeps_the_last_good_value() {
    let mut moto = Moto::start().await;
    moto.create_secret("app/outage", &rds_secret(&[KEY_ALPHA]))
        .await;
    let logs = LogCapture::start();
    let state = state_for(&moto, "app/outage", Target::Container, None)
        .await
        .expect("state builds");
    let app = router(state.clone());
    let last_success = state.metrics.secrets_last_success.get();
    assert_eq!(counter(&state, "error"), 0);

    moto.stop();
    let secrets = state.secrets.clone().expect("secrets enabled");
    let error = secrets.refresh().await.expect_err("emulator is down");
    assert!(error.to_string().contains("app/outage"), "{error}");

    assert_eq!(counter(&state, "error"), 1);
    assert_eq!(state.metrics.secrets_last_success.get(), last_success);
    assert_eq!(get(&app, "/ready").await.status, 200);
    assert_eq!(
        create_order(&app, Some(KEY_ALPHA)).await,
        StatusCode::CREATED
    );
    assert!(secrets.database_url().is_some());
    assert!(logs.text().contains("runtime secret refresh failed"));
    logs.assert_no_secret_values();
}

#[tokio::test]
async fn lambda_refreshes_on_the_first_request_after_the_ttl() {
    let moto = Moto::start().await;
    moto.create_secret("app/lambda", &rds_secret(&[KEY_ALPHA]))
        .await;
    let logs = LogCapture::start();

    // Within the TTL, requests are served from the cache.
    let cached = state_for(
        &moto,
        "app/lambda",
        Target::Lambda,
        Some(Duration::from_secs(3600)),
    )
    .await
    .expect("state builds");
    let app = router(cached.clone());
    let authorization = format!("Bearer {KEY_ALPHA}");
    let headers = [("authorization", authorization.as_str())];
    for _ in 0..3 {
        let reply = send(&app, request(Method::GET, "/orders", &headers, None)).await;
        assert_eq!(reply.status, 200);
    }
    assert_eq!(counter(&cached, "success"), 1);

    // Past the TTL, the next request fetches first, so a rotated key works on that request.
    let lazy = state_for(
        &moto,
        "app/lambda",
        Target::Lambda,
        Some(Duration::from_millis(1)),
    )
    .await
    .expect("state builds");
    let app = router(lazy.clone());
    moto.put_secret("app/lambda", &rds_secret(&[KEY_GAMMA]))
        .await;
    // A frozen Lambda cannot refresh on its own: nothing fetches without a request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counter(&lazy, "success"), 1);
    assert_eq!(
        create_order(&app, Some(KEY_GAMMA)).await,
        StatusCode::CREATED
    );
    assert_eq!(counter(&lazy, "success"), 2);
    assert_eq!(
        create_order(&app, Some(KEY_ALPHA)).await,
        StatusCode::UNAUTHORIZED
    );
    logs.assert_no_secret_values();
}

#[tokio::test]
async fn container_refreshes_in_the_background() {
    let moto = Moto::start().await;
    moto.create_secret("app/background", &rds_secret(&[KEY_ALPHA]))
        .await;
    let state = state_for(
        &moto,
        "app/background",
        Target::Container,
        Some(Duration::from_millis(50)),
    )
    .await
    .expect("state builds");
    moto.put_secret("app/background", &rds_secret(&[KEY_GAMMA]))
        .await;
    let app = router(state.clone());
    // Only the background task refreshes in container mode: requests never trigger it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while create_order(&app, Some(KEY_GAMMA)).await != StatusCode::CREATED {
        assert!(
            Instant::now() < deadline,
            "the rotated key never took effect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(counter(&state, "success") >= 2);
    assert_eq!(
        create_order(&app, Some(KEY_ALPHA)).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn malformed_secrets_stop_start_up_naming_the_key() {
    let moto = Moto::start().await;
    let cases = [
        (
            "app/not-json",
            format!("api_keys={KEY_ALPHA}"),
            "not valid JSON",
        ),
        (
            "app/keys-string",
            serde_json::json!({ "api_keys": KEY_ALPHA }).to_string(),
            "key `api_keys`: expected an array of strings",
        ),
        (
            "app/port-bool",
            serde_json::json!({"host": "h", "username": "u", "password": PASSWORD, "port": true})
                .to_string(),
            "key `port`: expected a TCP port number",
        ),
        (
            "app/url-number",
            serde_json::json!({ "database_url": 5432 }).to_string(),
            "key `database_url`: expected a string",
        ),
    ];
    for (name, text, _) in &cases {
        moto.create_secret(name, text).await;
    }
    let logs = LogCapture::start();
    for (name, _, expected) in &cases {
        let error = state_for(&moto, name, Target::Container, None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name} must not load"))
            .to_string();
        assert!(error.contains(name) && error.contains(expected), "{error}");
        assert!(!error.contains('\n'), "{error}");
        assert_no_secret_values(&error);
    }
    // The shells print the whole chain (`{:#}`): the cause appears once.
    for (name, _, expected) in &cases {
        let error = state_for(&moto, name, Target::Container, None)
            .await
            .err()
            .map(anyhow::Error::from)
            .unwrap_or_else(|| panic!("{name} must not load"));
        let line = format!("{error:#}");
        assert_eq!(line.matches(expected).count(), 1, "{line}");
    }
    logs.assert_no_secret_values();
}

#[tokio::test]
async fn missing_secret_stops_the_binary_with_one_clear_line() {
    let moto = Moto::start().await;
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_order-service"))
        .env_clear()
        .envs(moto.env())
        .env("SECRETS_MANAGER_ENABLED", "true")
        .env("AWS_SECRET_NAME", "order-service/does-not-exist")
        .env("LOG_LEVEL", "debug")
        .env("PORT", "0")
        .env("METRICS_PORT", "0")
        .output()
        .expect("binary runs");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("order-service/does-not-exist")
            && stderr.contains("ResourceNotFoundException"),
        "{stderr}"
    );
    // Bounded retries: it gives up in seconds rather than hanging.
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_no_secret_values(&String::from_utf8_lossy(&output.stdout));
}

#[tokio::test]
async fn binary_loads_the_secret_and_logs_no_value() {
    let moto = Moto::start().await;
    moto.create_secret("app/binary-run", &rds_secret(&[KEY_ALPHA]))
        .await;
    let env = moto.env();
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vars.extend([
        ("ENVIRONMENT", "staging"),
        ("SECRETS_MANAGER_ENABLED", "true"),
        ("AWS_SECRET_NAME", "app/binary-run"),
        ("LOG_LEVEL", "debug"),
    ]);
    let service = Service::start(&vars);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    assert_eq!(
        http.get(service.url("/ready"))
            .send()
            .await
            .expect("ready")
            .status(),
        200
    );
    let created = http
        .post(service.url("/orders"))
        .bearer_auth(KEY_ALPHA)
        .json(&new_order("Binary Tester"))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let denied = http
        .post(service.url("/orders"))
        .json(&new_order("Binary Tester"))
        .send()
        .await
        .expect("create");
    assert_eq!(denied.status(), 401);

    let logs = service.logs().join("\n");
    assert!(logs.contains("runtime secret loaded"), "{logs}");
    assert_no_secret_values(&logs);
}

/// A TCP endpoint that forwards to `upstream` until `stall` is set, then accepts
/// connections and never answers (a black-holed Secrets Manager endpoint).
struct StallingProxy {
    endpoint: String,
    stall: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl StallingProxy {
    async fn start(upstream: &str) -> StallingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let stall = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stall);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut client, _)) = listener.accept().await {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    held.push(client); // accepted, never read, never answered
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        StallingProxy {
            endpoint,
            stall,
            task,
        }
    }

    fn stall(&self) {
        self.stall.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config_with_timeout(secret_name: &str, timeout_ms: &str) -> Config {
    let vars: HashMap<String, String> = [
        ("ENVIRONMENT", "staging"),
        ("SECRETS_MANAGER_ENABLED", "true"),
        ("AWS_SECRET_NAME", secret_name),
        ("AWS_REGION", "us-east-1"),
        ("SECRETS_TIMEOUT_MS", timeout_ms),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Config::from_vars(&vars).expect("test config is valid")
}

/// Every Secrets Manager call is bounded: a refresh against an endpoint that accepts and never
/// answers gives up after SECRETS_TIMEOUT_MS, releases the single-flight lock, and the last
/// good secret keeps serving (also on the Lambda, where the refresh runs inside a request).
#[tokio::test]
async fn a_stalled_endpoint_times_out_and_the_last_good_secret_stays() {
    let moto = Moto::start().await;
    moto.create_secret("app/stall", &rds_secret(&[KEY_ALPHA]))
        .await;
    let proxy = StallingProxy::start(&moto.endpoint).await;
    let aws = crate::support::moto::sdk_config_for(&proxy.endpoint).await;
    let mut config = config_with_timeout("app/stall", "500");
    if let Some(secrets) = config.secrets.as_mut() {
        secrets.refresh_interval = Duration::from_millis(200);
    }
    let state = build_state_with_aws(config, Target::Lambda, Some(aws))
        .await
        .expect("loads through the proxy");
    let app = router(state.clone());
    let secrets = state.secrets.clone().expect("secrets enabled");

    proxy.stall();
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The Lambda refreshes inside this request: it must still be answered, promptly, with the
    // last good keys.
    let started = Instant::now();
    // Bounded here too, so that an unbounded call fails the test instead of hanging it.
    let created =
        tokio::time::timeout(Duration::from_secs(20), create_order(&app, Some(KEY_ALPHA)))
            .await
            .expect("the request is answered although Secrets Manager stalls");
    assert_eq!(created, StatusCode::CREATED);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let started = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(20), secrets.refresh())
        .await
        .expect("the refresh gives up")
        .expect_err("stalled");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        error.to_string().contains("no answer within 500 ms"),
        "{error}"
    );
    assert!(secrets.has_value() && secrets.database_url().is_some());
    assert!(counter(&state, "error") >= 2);
    assert_eq!(get(&app, "/ready").await.status, 200);
}

/// Start-up of `target` against an endpoint that accepts and never answers: the error, and how
/// long start-up took to give up.
async fn start_up_against_a_stalled_endpoint(
    target: Target,
    timeout_ms: &str,
) -> (String, Duration) {
    let moto = Moto::start().await;
    let proxy = StallingProxy::start(&moto.endpoint).await;
    proxy.stall();
    let aws = crate::support::moto::sdk_config_for(&proxy.endpoint).await;
    let started = Instant::now();
    let start = build_state_with_aws(
        config_with_timeout("app/never", timeout_ms),
        target,
        Some(aws),
    );
    let error = tokio::time::timeout(Duration::from_secs(30), start)
        .await
        .expect("start-up gives up")
        .err()
        .expect("cannot start without the secret")
        .to_string();
    (error, started.elapsed())
}

#[tokio::test]
async fn start_up_against_a_stalled_endpoint_gives_up_in_bounded_time() {
    let (error, took) = start_up_against_a_stalled_endpoint(Target::Container, "300").await;
    // Five attempts of 300 ms and the back-off between them.
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        error.contains("after 5 attempts") && error.contains("no answer within 300 ms"),
        "{error}"
    );
}

/// Lambda ends the init phase after 10 s: with the default SECRETS_TIMEOUT_MS (3 s), five
/// attempts against a black-holed endpoint would take about 18 s, so the function would be
/// killed without a word. Start-up gives up when the next attempt could not end within 8 s.
#[tokio::test]
async fn lambda_start_up_gives_up_within_the_init_phase() {
    let (error, took) = start_up_against_a_stalled_endpoint(Target::Lambda, "3000").await;
    // 3 s, 0.2 s, 3 s: a third attempt would end after 9.6 s, beyond the 8 s budget.
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        error.contains("after 2 attempts") && error.contains("no answer within 3000 ms"),
        "{error}"
    );
}

/// On the Lambda the first request after the refresh interval fetches the secret: that fetch
/// is part of the request, so a stalled Secrets Manager (SECRETS_TIMEOUT_MS 3 s) cannot hold
/// a request beyond REQUEST_TIMEOUT_MS (1 s); it is answered 504 in time.
#[tokio::test]
async fn a_request_refresh_ends_within_the_request_timeout() {
    let moto = Moto::start().await;
    moto.create_secret("app/slow", &rds_secret(&[KEY_ALPHA]))
        .await;
    let proxy = StallingProxy::start(&moto.endpoint).await;
    let aws = crate::support::moto::sdk_config_for(&proxy.endpoint).await;
    let mut config = config_with_timeout("app/slow", "3000");
    config.request_timeout = Duration::from_millis(1000);
    if let Some(secrets) = config.secrets.as_mut() {
        secrets.refresh_interval = Duration::from_millis(200);
    }
    let state = build_state_with_aws(config, Target::Lambda, Some(aws))
        .await
        .expect("loads through the proxy");
    let app = router(state);

    proxy.stall();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(20), create_order(&app, Some(KEY_ALPHA)))
        .await
        .expect("the request is answered");
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
}
