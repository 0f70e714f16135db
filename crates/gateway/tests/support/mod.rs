//! Runs a real `gatewayd` process for over-the-socket tests: writes its config, finds the admin address in its
//! JSON log, polls `/readyz`, looks listeners up in `/api/listeners`, and stops it with SIGTERM.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const GATEWAYD: &str = env!("CARGO_BIN_EXE_gatewayd");
/// Every client protocol gatewayd serves.
pub const PROTOCOLS: [&str; 6] = [
    "stomp",
    "messageloop",
    "goomerang",
    "loom",
    "chanserv",
    "mqtt",
];

pub struct Gatewayd {
    child: Child,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// The files given after the main one with further `--config` flags, in order.
    pub extra_paths: Vec<PathBuf>,
    /// How many log lines gatewayd wrote per message text.
    messages: Arc<Mutex<HashMap<String, usize>>>,
}

/// `kill(1)`, which sends gatewayd its signals.
fn kill() -> Command {
    Command::new("kill")
}

fn no_kill(err: std::io::Error) -> ExitStatus {
    panic!("cannot run kill ({err}): install the Debian package procps (scripts/test.sh installs what the tests need)")
}

/// Config text that binds the admin listener on an ephemeral loopback port.
pub fn base_config() -> String {
    "[admin]\naddress = \"127.0.0.1:0\"\n[shutdown]\ndrain_timeout_secs = 5\n".to_owned()
}

/// [`base_config`] plus each of `sections`, in order, enabled on an ephemeral loopback port.
pub fn config_enabling(sections: &[&str]) -> String {
    let mut config = base_config();
    for section in sections {
        config += &format!("[{section}]\nenabled = true\naddress = \"127.0.0.1:0\"\n");
    }
    config
}

impl Gatewayd {
    /// Starts gatewayd with `config` (TOML text) and `env` overrides, and waits until it is ready.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Gatewayd {
        Gatewayd::spawn(config, &[], env)
    }

    /// Starts gatewayd with `config` and then each of `extra` (TOML text, file names `extra-<n>.toml`) as further
    /// `--config` files merged over it, and waits until it is ready.
    pub fn start_with_files(config: &str, extra: &[&str]) -> Gatewayd {
        Gatewayd::spawn(config, extra, &[])
    }

    fn spawn(config: &str, extra: &[&str], env: &[(&str, &str)]) -> Gatewayd {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("gatewayd.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut extra_paths = Vec::with_capacity(extra.len());
        for (n, text) in extra.iter().enumerate() {
            let path = dir.path().join(format!("extra-{n}.toml"));
            std::fs::write(&path, text).expect("write extra config");
            extra_paths.push(path);
        }
        let mut command = Command::new(GATEWAYD);
        command.arg("--config").arg(&config_path);
        for path in &extra_paths {
            command.arg("--config").arg(path);
        }
        command
            .arg("--log-format")
            .arg("json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn gatewayd");
        let stderr = child.stderr.take().expect("stderr");
        let (found, admin) = mpsc::channel();
        let messages = Arc::new(Mutex::new(HashMap::new()));
        let counts = messages.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("TEST_GATEWAYD_LOG").is_some() {
                    eprintln!("gatewayd: {line}");
                }
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if let Some(message) = value["fields"]["message"].as_str() {
                    if let Ok(mut counts) = counts.lock() {
                        *counts.entry(message.to_owned()).or_insert(0) += 1;
                    }
                }
                if sent {
                    continue;
                }
                if value["fields"]["message"] == "admin listener bound" {
                    if let Some(address) = value["fields"]["address"]
                        .as_str()
                        .and_then(|a| a.parse().ok())
                    {
                        let _ = found.send(address);
                        sent = true;
                    }
                }
            }
        });
        let admin: SocketAddr = admin
            .recv_timeout(Duration::from_secs(30))
            .expect("gatewayd logged its admin address");
        let gateway = Gatewayd {
            child,
            admin,
            _dir: dir,
            config_path,
            extra_paths,
            messages,
        };
        gateway.wait_ready();
        gateway
    }

    pub fn start(config: &str) -> Gatewayd {
        Gatewayd::start_with_env(config, &[])
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many log lines so far have a message containing `text`.
    pub fn logged(&self, text: &str) -> usize {
        let counts = self.messages.lock().expect("log counts");
        counts
            .iter()
            .filter(|(message, _)| message.contains(text))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// GET on the admin API; returns status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::blocking::get(self.url(path)).expect("admin request");
        let status = response.status().as_u16();
        (status, response.text().expect("admin body"))
    }

    /// `POST /api/reload`: the report, once the new files are applied.
    pub fn reload(&self) -> serde_json::Value {
        reqwest::blocking::Client::new()
            .post(self.url("/api/reload"))
            .send()
            .expect("admin request")
            .json()
            .expect("reload report")
    }

    /// Writes `config` over the main config file, then reloads as [`Gatewayd::reload`] does.
    pub fn rewrite_and_reload(&self, config: &str) -> serde_json::Value {
        std::fs::write(&self.config_path, config).expect("write config");
        self.reload()
    }

    /// SIGHUP: gatewayd reloads in the background.
    pub fn sighup(&self) {
        let pid = self.pid().to_string();
        let status = kill().args(["-HUP", &pid]).status().unwrap_or_else(no_kill);
        assert!(status.success());
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("json")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = reqwest::blocking::get(self.url("/readyz")) {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "gatewayd did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The bound address of listener `name` (such as `stomp.tcp`).
    pub fn listener(&self, name: &str) -> SocketAddr {
        let listeners = self.get_json("/api/listeners");
        let entry = listeners
            .as_array()
            .and_then(|all| all.iter().find(|l| l["name"] == name))
            .unwrap_or_else(|| panic!("listener {name} not in {listeners}"));
        entry["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("listener address")
    }

    /// Polls `check` on the admin JSON at `path` until it holds (instead of sleeping).
    pub fn wait_for(&self, path: &str, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if check(&self.get_json(path)) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The value of a Prometheus counter or gauge with all of `labels`, summed over other labels.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                let metric = key.split('{').next()?;
                (metric == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }

    /// Polls [`Gatewayd::metric`] until it is `value` (at most 10 s): for counters a node updates after the
    /// effect a test observed (a forward counted once the backend answered).
    pub fn wait_metric(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.metric(name, labels);
            if now == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}{labels:?} is {now}, not {value}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits for the exit status, at most `within`.
    pub fn terminate(mut self, within: Duration) -> ExitStatus {
        let status = kill()
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap_or_else(no_kill);
        assert!(status.success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gatewayd did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gatewayd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `gatewayd check-config` on `text`; returns success and combined output.
pub fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("check.toml");
    std::fs::write(&path, text).expect("write");
    check_config_files(&[path])
}

/// Asserts `gatewayd check-config` rejects `text` with output mentioning `mentioning`.
pub fn assert_config_rejected(text: &str, mentioning: &str) {
    let (ok, output) = check_config(text);
    assert!(!ok, "{output}");
    assert!(output.contains(mentioning), "{output}");
}

/// Runs `gatewayd check-config` on `files` (merged in order); returns success and combined output.
pub fn check_config_files(files: &[PathBuf]) -> (bool, String) {
    let output = Command::new(GATEWAYD)
        .arg("check-config")
        .args(files)
        .output()
        .expect("run check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `<target>/<name>`, next to the gatewayd binary's profile directory.
pub fn target_dir(name: &str) -> PathBuf {
    let binary = std::path::Path::new(GATEWAYD);
    let target = binary.parent().and_then(std::path::Path::parent);
    target.expect("target dir").join(name)
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Polls `/api/cluster` until the cluster is in `state`.
pub fn wait_cluster(gateway: &Gatewayd, state: &str) {
    gateway.wait_for("/api/cluster", &format!("cluster {state}"), |c| {
        c["state"] == state
    });
}

/// Asserts a reload report's `applied` and `restart_needed` lists.
pub fn assert_reload(report: &serde_json::Value, applied: &[&str], restart_needed: &[&str]) {
    assert_eq!(report["applied"], serde_json::json!(applied), "{report}");
    assert_eq!(
        report["restart_needed"],
        serde_json::json!(restart_needed),
        "{report}"
    );
}

/// The identities in an `/api/connections` listing, sorted.
pub fn sorted_identities(connections: &serde_json::Value) -> Vec<&str> {
    let mut identities: Vec<&str> = connections
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["identity"].as_str())
        .collect();
    identities.sort_unstable();
    identities
}

/// Subscribers of `topic` summed over its `/api/topics` entries (0 when it has none).
pub fn subscribers(topics: &serde_json::Value, topic: &str) -> u64 {
    topics
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["topic"] == topic)
        .filter_map(|t| t["fanout_subscribers"].as_u64())
        .sum()
}

/// Polls `/api/topics` until [`subscribers`] of `topic` is `count`.
pub fn wait_subscribers(gateway: &Gatewayd, topic: &str, count: u64) {
    gateway.wait_for("/api/topics", &format!("{count} on {topic}"), |topics| {
        subscribers(topics, topic) == count
    });
}

/// The first `/api/topics` entry for topic `name`.
pub fn topic_entry<'a>(topics: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    topics
        .as_array()
        .and_then(|all| all.iter().find(|t| t["topic"] == name))
}

/// Polls `/api/topics` until the [`topic_entry`] of `topic` has `members` group members.
pub fn wait_members(gateway: &Gatewayd, topic: &str, members: u64) {
    gateway.wait_for(
        "/api/topics",
        &format!("{members} members of {topic}"),
        |v| topic_entry(v, topic).is_some_and(|t| t["group"]["members"].as_u64() == Some(members)),
    );
}

/// A multi-thread tokio runtime with `workers` worker threads.
pub fn multi_thread_runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A current-thread tokio runtime.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Asserts that the process `what` exited with success; the failure message holds its stderr.
pub fn assert_succeeded(output: &std::process::Output, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed: {stderr}");
}

/// `gatewayd_drops_total` for `reason` on `protocol`.
pub fn dropped(gateway: &Gatewayd, reason: &str, protocol: &str) -> f64 {
    gateway.metric(
        "gatewayd_drops_total",
        &[("reason", reason), ("protocol", protocol)],
    )
}

/// Polls `/api/connections` until it lists `n` connections.
pub fn wait_connection_count(gateway: &Gatewayd, n: usize) {
    gateway.wait_for("/api/connections", &format!("{n} connections"), |all| {
        all.as_array().is_some_and(|all| all.len() == n)
    });
}

/// A loopback port nothing listens on (bound once, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Polls `/api/topics` until an entry for `topic` has exactly `fanout` subscribers.
pub fn wait_fanout(gateway: &Gatewayd, topic: &str, fanout: u64) {
    gateway.wait_for("/api/topics", &format!("{fanout} on {topic}"), |topics| {
        topics
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["topic"] == topic && t["fanout_subscribers"].as_u64() == Some(fanout))
    });
}
