//! Runs the real `order-service` binary on free ports and reads where it listens.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Service {
    child: Child,
    pub api: String,
    pub metrics: Option<String>,
    output: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts the binary with `vars` on top of a clean environment and waits for its
    /// `listening` log line (ports 0: the OS picks free ones).
    pub fn start(vars: &[(&str, &str)]) -> Service {
        let mut command = Command::new(env!("CARGO_BIN_EXE_order-service"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("METRICS_PORT", "0")
            .env("LOG_FORMAT", "json")
            // A developer's machine unless the test says otherwise.
            .env("ENVIRONMENT", "local")
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("binary starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().expect("log buffer").push(line);
                }
            });
        }
        let mut service = Service {
            child,
            api: String::new(),
            metrics: None,
            output,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = service.find_line("\"listening\"") {
                let event: serde_json::Value = serde_json::from_str(&line).expect("json log");
                service.api = format!("http://{}", event["api_addr"].as_str().expect("api_addr"));
                service.metrics = event["metrics_addr"]
                    .as_str()
                    .map(|a| format!("http://{a}"));
                return service;
            }
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("service exited with {status}: {:?}", service.logs());
            }
            assert!(
                Instant::now() < deadline,
                "service did not start: {:?}",
                service.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.output.lock().expect("log buffer").clone()
    }

    pub fn find_line(&self, needle: &str) -> Option<String> {
        self.logs().into_iter().find(|l| l.contains(needle))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// Sends SIGTERM, as Kubernetes does on pod deletion.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal named `name` (`TERM`, `STOP`, `CONT`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Stops the process (SIGSTOP) and returns once every one of its threads is stopped.
    /// `kill` returns before that: one thread of the process must first take the signal, and
    /// on a busy machine another may meanwhile run, and read what arrives, for a while.
    pub fn stop(&self) {
        self.signal("STOP");
        let tasks = format!("/proc/{}/task", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        let all_stopped = || {
            std::fs::read_dir(&tasks)
                .expect("the process's threads")
                .all(|task| {
                    let stat = task
                        .ok()
                        .and_then(|task| std::fs::read_to_string(task.path().join("stat")).ok())
                        .unwrap_or_default();
                    // The state follows the command name, which is in parentheses.
                    stat.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('T'))
                })
        };
        while !all_stopped() {
            assert!(Instant::now() < deadline, "the process did not stop");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for the process to exit on its own.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "service did not exit: {:?}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
