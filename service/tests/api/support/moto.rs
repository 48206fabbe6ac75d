//! A real moto server (AWS emulator) on a free loopback port, stopped on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::Credentials;
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::Client;

const INSTALL_HINT: &str = "moto_server not found: install it with \
    `python3 -m venv ~/.cache/order-service/venv && \
    ~/.cache/order-service/venv/bin/pip install 'moto[server]'` (or put moto_server on PATH)";

/// Dummy credentials: moto accepts any, and they keep the SDK away from real AWS.
pub const AWS_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

pub struct Moto {
    child: Option<Child>,
    pub endpoint: String,
}

impl Moto {
    /// Starts moto_server and waits until it answers HTTP.
    pub async fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(INSTALL_HINT);
        let mut moto = Moto {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        moto.wait_until_answering().await;
        moto
    }

    async fn wait_until_answering(&mut self) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http.get(&self.endpoint).send().await.is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("moto_server exited with {status} before answering");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the emulator, as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SDK settings pointing at this emulator, with dummy credentials, in-process.
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.endpoint).await
    }

    pub async fn client(&self) -> Client {
        order_service::secrets::client(&self.sdk_config().await)
    }

    /// Environment for a child process using this emulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env: Vec<(&'static str, String)> =
            AWS_ENV.iter().map(|(k, v)| (*k, v.to_string())).collect();
        env.push(("AWS_ENDPOINT_URL", self.endpoint.clone()));
        env
    }

    pub async fn create_secret(&self, name: &str, text: &str) {
        self.client()
            .await
            .create_secret()
            .name(name)
            .secret_string(text)
            .send()
            .await
            .expect("create secret");
    }

    pub async fn create_binary_secret(&self, name: &str, bytes: &[u8]) {
        self.client()
            .await
            .create_secret()
            .name(name)
            .secret_binary(Blob::new(bytes))
            .send()
            .await
            .expect("create secret");
    }

    /// A new AWSCURRENT version, as a rotation writes it.
    pub async fn put_secret(&self, name: &str, text: &str) {
        self.client()
            .await
            .put_secret_value()
            .secret_id(name)
            .secret_string(text)
            .send()
            .await
            .expect("put secret value");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

fn moto_server() -> PathBuf {
    let venv = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/order-service/venv/bin/moto_server"))
        .filter(|path| path.is_file());
    if let Some(path) = venv {
        return path;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("moto_server"))
            .find(|path| path.is_file())
    });
    on_path.unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

/// SDK settings pointing at any endpoint (an emulator, or a proxy in front of one), with
/// dummy credentials, in-process.
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(order_service::secrets::http_client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(endpoint)
        .load()
        .await
}
