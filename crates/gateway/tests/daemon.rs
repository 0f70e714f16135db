//! The daemon's lifecycle over real sockets: start from the example config, admin endpoints, SIGTERM, and
//! check-config errors.

mod support;

use std::time::Duration;

use support::*;

/// The example config with every bound address moved to an ephemeral loopback port through environment
/// overrides, which also proves the overrides work.
fn example_config_env() -> Vec<(&'static str, &'static str)> {
    vec![("GATEWAYD_ADMIN__ADDRESS", "127.0.0.1:0")]
}

#[test]
fn starts_from_the_example_config_and_answers_admin_requests() {
    let example = std::fs::read_to_string(repo_root().join("config/gatewayd.toml")).unwrap();
    let gateway = Gatewayd::start_with_env(&example, &example_config_env());
    assert_eq!(gateway.get("/livez"), (200, "ok".to_owned()));
    assert_eq!(gateway.get("/readyz").0, 200);
    let (status, metrics) = gateway.get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("gatewayd_subscriptions"), "{metrics}");
    assert!(gateway.get_json("/api/listeners").is_array());
    assert!(gateway.get_json("/api/connections").is_array());
    assert!(gateway.get_json("/api/topics").is_array());
    assert_eq!(gateway.get_json("/api/cluster")["state"], "standalone");
    let status = gateway.terminate(Duration::from_secs(6));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn check_config_accepts_the_example() {
    let example = std::fs::read_to_string(repo_root().join("config/gatewayd.toml")).unwrap();
    let (ok, output) = check_config(&example);
    assert!(ok, "{output}");
}

#[test]
fn check_config_names_the_bad_key() {
    let (ok, output) = check_config("[shutdown]\ndrain_timeout_secs = \"later\"\n");
    assert!(!ok);
    assert!(output.contains("shutdown.drain_timeout_secs"), "{output}");
    let (ok, output) = check_config("[admin]\nlisten = \"127.0.0.1:1\"\n");
    assert!(!ok);
    assert!(output.contains("listen"), "{output}");
}
