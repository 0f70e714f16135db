//! Runs the `gatewayctl` binary against a test gatewayd: spawn with stdout/stderr piped (and without any
//! `GATEWAYCTL_TOKEN`/`GATEWAYCTL_LOGIN` of the test's own environment), wait with a deadline, and wait until a
//! subscription shows in `/api/topics`, and read a header of a message it printed.
#![allow(dead_code)]

use std::io::Read as _;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::Gatewayd;

pub const GATEWAYCTL: &str = env!("CARGO_BIN_EXE_gatewayctl");
/// Longest any one gatewayctl run may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// `gatewayctl bench conns` as the tests run it: a JSON report, read 1 s after the connections opened (they need the
/// connections, not the idle figure that the default wait of 11 s is for).
pub const BENCH_CONNS: [&str; 5] = ["bench", "conns", "--json", "--idle-secs", "1"];

/// `gatewayctl --admin <gatewayd> args…`, started with stdout piped.
pub fn spawn(gateway: &Gatewayd, args: &[&str]) -> Child {
    spawn_with_env(gateway, args, &[])
}

/// Like [`spawn`], with `env` set for gatewayctl.
pub fn spawn_with_env(gateway: &Gatewayd, args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(GATEWAYCTL)
        .arg("--admin")
        .arg(gateway.url(""))
        .args(args)
        .env_remove("GATEWAYCTL_TOKEN")
        .env_remove("GATEWAYCTL_LOGIN")
        .env_remove("GATEWAYCTL_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gatewayctl")
}

/// Waits for `child` within [`DEADLINE`] (killing it if it overruns) and returns its output (stdout empty when the
/// caller took it).
pub fn finish(mut child: Child) -> Output {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            if let Some(mut out) = child.stdout.take() {
                out.read_to_end(&mut stdout).unwrap();
            }
            child
                .stderr
                .take()
                .unwrap()
                .read_to_end(&mut stderr)
                .unwrap();
            return Output {
                status,
                stdout,
                stderr,
            };
        }
        if Instant::now() > until {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "gatewayctl did not finish within {DEADLINE:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs gatewayctl to completion and returns its stdout; panics when it fails.
pub fn run(gateway: &Gatewayd, args: &[&str]) -> String {
    let output = finish(spawn(gateway, args));
    super::assert_succeeded(&output, &format!("gatewayctl {args:?}"));
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// Waits until `topic` has `fanout` fanout subscribers and `members` group members.
pub fn wait_subscribed(gateway: &Gatewayd, topic: &str, fanout: u64, members: u64) {
    gateway.wait_for(
        "/api/topics",
        &format!("subscribers of {topic}"),
        |topics| {
            topics.as_array().into_iter().flatten().any(|t| {
                t["topic"] == topic
                    && t["fanout_subscribers"].as_u64() == Some(fanout)
                    && t["group"]["members"].as_u64().unwrap_or(0) == members
            })
        },
    );
}

/// The value of header `name` in a message gatewayctl printed as JSON.
pub fn header<'a>(message: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    message["headers"]
        .as_array()?
        .iter()
        .find(|pair| pair[0] == name)?[1]
        .as_str()
}
