//! A real `nats-server` (Debian package) on 127.0.0.1 for cluster tests, with its monitoring port so tests can
//! poll which subjects are subscribed instead of sleeping. [`NatsServer::start_jetstream`] enables JetStream with a
//! temporary store directory.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Child,
    pub port: u16,
    pub monitor: u16,
    /// JetStream's store directory, removed with the server.
    _store: Option<tempfile::TempDir>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl NatsServer {
    /// Starts nats-server on `port` (0 = any free port) and returns once it accepts clients.
    pub fn start(port: u16) -> NatsServer {
        NatsServer::launch(port, None)
    }

    /// Like [`NatsServer::start`], with JetStream (`-js`) storing in a fresh temporary directory.
    pub fn start_jetstream(port: u16) -> NatsServer {
        NatsServer::launch(port, Some(tempfile::tempdir().expect("tempdir")))
    }

    /// Starts nats-server and waits for "Server is ready". A port picked here by [`free_port`] can be taken by
    /// another test before nats-server binds it, and then nats-server exits at once: it is tried again with fresh
    /// ports, three times at most, and the last log goes into the panic.
    fn launch(requested: u16, store: Option<tempfile::TempDir>) -> NatsServer {
        let mut log = Vec::new();
        for _ in 0..3 {
            let port = if requested == 0 {
                free_port()
            } else {
                requested
            };
            let monitor = free_port();
            let mut args = vec![
                "-a".to_owned(),
                "127.0.0.1".to_owned(),
                "-p".to_owned(),
                port.to_string(),
                "-m".to_owned(),
                monitor.to_string(),
            ];
            if let Some(store) = &store {
                args.extend(["-js".to_owned(), "-sd".to_owned()]);
                args.push(store.path().display().to_string());
            }
            let mut child = Command::new("nats-server")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|err| {
                    panic!(
                        "cannot start nats-server ({err}): install the Debian package nats-server \
                         (scripts/test.sh installs what the tests need)"
                    )
                });
            let stderr = child.stderr.take().expect("stderr");
            let mut lines = BufReader::new(stderr).lines();
            log.clear();
            let ready = lines.by_ref().map_while(Result::ok).any(|line| {
                let ready = line.contains("Server is ready");
                log.push(line);
                ready
            });
            if ready {
                std::thread::spawn(move || lines.for_each(drop));
                return NatsServer {
                    child,
                    port,
                    monitor,
                    _store: store,
                };
            }
            let _ = child.wait();
        }
        panic!("nats-server exited early:\n{}", log.join("\n"));
    }

    /// Stops the server and starts it again on the same port, with the same JetStream store.
    pub fn restart(mut self) -> NatsServer {
        self.stop();
        let store = self._store.take();
        NatsServer::launch(self.port, store)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How many client subscriptions on `subject` the server has (from `/connz?subs=1`).
    pub fn subscriptions(&self, subject: &str) -> usize {
        let url = format!("http://127.0.0.1:{}/connz?subs=1", self.monitor);
        let Ok(response) = reqwest::blocking::get(url) else {
            return 0;
        };
        let Ok(body) = response.json::<serde_json::Value>() else {
            return 0;
        };
        body["connections"]
            .as_array()
            .map(|connections| {
                connections
                    .iter()
                    .filter_map(|c| c["subscriptions_list"].as_array())
                    .flatten()
                    .filter(|s| s.as_str() == Some(subject))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Polls until `subject` has at least `n` subscriptions.
    pub fn wait_subscribed(&self, subject: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.subscriptions(subject) < n {
            assert!(
                Instant::now() < deadline,
                "nats: {subject} never got {n} subscriptions"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
