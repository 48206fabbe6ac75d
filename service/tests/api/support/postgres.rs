//! Throwaway PostgreSQL clusters: `initdb` into a temp dir, `postgres` on a free loopback port,
//! one fresh database per test. Stopped when the last holder drops it; a watchdog process
//! stops it too if the test process dies without unwinding.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use order_service::config::DatabaseConfig;
use order_service::store::{CredentialRefresher, PostgresStore};
use secrecy::SecretString;
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;

const SUPERUSER: &str = "postgres";
const PASSWORD: &str = "test-superuser-password";
const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, pg_ctl, postgres) are needed: \
     install them (Debian/Ubuntu: apt-get install postgresql) and put their bin directory on PATH";

pub struct Cluster {
    dir: TempDir,
    pub port: u16,
    watchdog: Mutex<Option<Child>>,
    /// Server options beyond the defaults (TLS).
    extra_options: String,
}

impl Cluster {
    /// One cluster for every test in this process that currently holds it.
    pub fn shared() -> Arc<Cluster> {
        static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(Cluster::start());
        *shared = Arc::downgrade(&cluster);
        cluster
    }

    /// A cluster of its own, for tests that stop and start the database.
    pub fn start() -> Cluster {
        Self::start_with(|_| String::new())
    }

    /// A cluster of its own that speaks TLS only with a certificate for `localhost` issued by
    /// a CA made here; answers the cluster and the CA's PEM file.
    pub fn start_tls() -> (Cluster, PathBuf) {
        let mut ca = None;
        let cluster = Self::start_with(|dir| {
            let path = |name: &str| dir.join(name).display().to_string();
            run(Command::new("openssl").args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=order-service test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &path("ca.key"),
                "-out",
                &path("ca.pem"),
            ]));
            run(Command::new("openssl").args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                &path("server.key"),
                "-out",
                &path("server.csr"),
            ]));
            std::fs::write(
                dir.join("server.ext"),
                "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
            )
            .expect("write extensions");
            run(Command::new("openssl").args([
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &path("server.csr"),
                "-CA",
                &path("ca.pem"),
                "-CAkey",
                &path("ca.key"),
                "-CAcreateserial",
                "-extfile",
                &path("server.ext"),
                "-out",
                &path("server.pem"),
            ]));
            std::fs::set_permissions(
                dir.join("server.key"),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .expect("key mode");
            if running_as_root() {
                run(Command::new("chown").args([
                    SUPERUSER,
                    &path("server.key"),
                    &path("server.pem"),
                ]));
            }
            ca = Some(dir.join("ca.pem"));
            format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                path("server.pem"),
                path("server.key")
            )
        });
        (cluster, ca.expect("CA made"))
    }

    fn start_with(extra_options: impl FnOnce(&Path) -> String) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("pg-test-")
            .tempdir()
            .expect("temp dir");
        if running_as_root() {
            // initdb refuses to run as root; the server runs as the postgres user.
            run(Command::new("chown").args([SUPERUSER, &dir.path().display().to_string()]));
        }
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, PASSWORD).expect("write password file");
        if running_as_root() {
            run(Command::new("chown").args([SUPERUSER, &password_file.display().to_string()]));
        }
        let data = dir.path().join("data");
        run(pg_command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", password_file.display())));
        let extra_options = extra_options(dir.path());
        let cluster = Cluster {
            port: free_port(),
            watchdog: Mutex::new(None),
            dir,
            extra_options,
        };
        cluster.start_server();
        *cluster
            .watchdog
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cluster.watchdog());
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts (or restarts) the server on the cluster's port and waits until it accepts.
    pub fn start_server(&self) {
        let options = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300{}",
            self.dir.path().display(),
            self.port,
            self.extra_options
        );
        run(pg_command("pg_ctl")
            .args(["start", "-w", "-t", "120", "-D"])
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-o", &options]));
    }

    /// Stops the server the way an operator would: sessions are ended, commits are kept.
    pub fn stop_server(&self) {
        run(pg_command("pg_ctl")
            .args(["stop", "-w", "-t", "120", "-m", "fast", "-D"])
            .arg(self.data()));
    }

    pub fn url(&self, database: &str) -> String {
        self.url_as(SUPERUSER, PASSWORD, database)
    }

    pub fn url_as(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// A new, empty database; tests that share the cluster never see each other's rows.
    pub async fn create_database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::SeqCst));
        self.execute("postgres", &format!("CREATE DATABASE {name}"))
            .await;
        name
    }

    /// Runs one statement as the superuser.
    pub async fn execute(&self, database: &str, sql: &str) {
        let mut conn = PgConnection::connect(&self.url(database))
            .await
            .expect("connect as superuser");
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
    }

    /// Stops the server if this process dies before `Drop` runs (a killed test run).
    fn watchdog(&self) -> Child {
        let script = r#"pid=$1; shift
            while kill -0 "$pid" 2>/dev/null; do sleep 1; done
            "$@" >/dev/null 2>&1"#;
        let mut stop = pg_command("pg_ctl");
        stop.args(["stop", "-m", "immediate", "-D"])
            .arg(self.data());
        Command::new("sh")
            .args(["-c", script, "watchdog", &std::process::id().to_string()])
            .arg(stop.get_program())
            .args(stop.get_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start watchdog")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self
            .watchdog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = pg_command("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A fresh database on the shared cluster; keeps the cluster alive while held.
pub struct TestDb {
    pub cluster: Arc<Cluster>,
    pub name: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let cluster = Cluster::shared();
        let name = cluster.create_database().await;
        TestDb { cluster, name }
    }

    /// On a dedicated cluster.
    pub async fn on(cluster: Arc<Cluster>) -> TestDb {
        let name = cluster.create_database().await;
        TestDb { cluster, name }
    }

    pub fn url(&self) -> String {
        self.cluster.url(&self.name)
    }

    /// A store in `schema`, migrated first (the deploy step), as the service would open it.
    pub async fn store(&self, schema: &str) -> PostgresStore {
        self.migrate(schema).await;
        self.store_with(&self.url(), schema, None)
            .await
            .expect("store connects")
    }

    /// `order-service migrate` for `schema`, as the deploy step runs it.
    pub async fn migrate(&self, schema: &str) {
        self.migrate_with(&self.url(), schema).await;
    }

    /// The same, connected as whoever `url` names.
    pub async fn migrate_with(&self, url: &str, schema: &str) {
        PostgresStore::migrate(
            &database_config(schema),
            &SecretString::from(url.to_owned()),
        )
        .await
        .expect("migrations apply");
    }

    pub async fn store_with(
        &self,
        url: &str,
        schema: &str,
        refresher: Option<Arc<dyn CredentialRefresher>>,
    ) -> Result<PostgresStore, order_service::store::PostgresError> {
        PostgresStore::connect(
            &database_config(schema),
            SecretString::from(url.to_owned()),
            refresher,
        )
        .await
    }

    pub async fn execute(&self, sql: &str) {
        self.cluster.execute(&self.name, sql).await;
    }

    /// First column of every row of `sql`, as text.
    pub async fn column(&self, sql: &str) -> Vec<String> {
        let mut conn = PgConnection::connect(&self.url())
            .await
            .expect("connect as superuser");
        let values: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
        values
    }
}

/// Generous timeouts: the tests run on a busy two-core machine.
pub fn database_config(schema: &str) -> DatabaseConfig {
    DatabaseConfig {
        url: None,
        schema: schema.to_owned(),
        max_connections: 5,
        pool_wait_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(30),
        statement_timeout: Duration::from_secs(30),
        ca_bundle: None,
    }
}

/// A PostgreSQL tool, run as the postgres user when the tests run as root.
fn pg_command(tool: &str) -> Command {
    let program = find_tool(tool);
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", SUPERUSER, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// On PATH, or in Debian's versioned directory, which is not on PATH.
fn find_tool(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin"));
    std::env::split_paths(&path)
        .chain(debian)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{tool} not found. {INSTALL_HINT}"))
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn run(command: &mut Command) {
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!(
            "{:?} cannot run ({e}). {INSTALL_HINT}",
            command.get_program()
        )
    });
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The server log, for failure messages.
pub fn server_log(cluster: &Cluster) -> String {
    std::fs::read_to_string(Path::new(cluster.dir.path()).join("server.log")).unwrap_or_default()
}
