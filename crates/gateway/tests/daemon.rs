//! The daemon's lifecycle over real sockets: start from the example config, admin endpoints, SIGTERM, and
//! check-config errors.

mod support;

use std::time::Duration;

use support::*;

/// The example config with every bound address moved to an ephemeral loopback port through environment
/// overrides, which also proves the overrides work.
fn example_config_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("GATEWAYD_ADMIN__ADDRESS", "127.0.0.1:0"),
        ("GATEWAYD_GOOMERANG__ADDRESS", "127.0.0.1:0"),
        ("GATEWAYD_LOOM__ADDRESS", "127.0.0.1:0"),
        ("GATEWAYD_CHANSERV__ADDRESS", "127.0.0.1:0"),
        ("GATEWAYD_MESSAGELOOP__WS__ADDRESS", "127.0.0.1:0"),
        ("GATEWAYD_MESSAGELOOP__GRPC__ADDRESS", "127.0.0.1:0"),
        ("GATEWAYD_STOMP__TCP__ADDRESS", "127.0.0.1:0"),
        ("GATEWAYD_STOMP__TLS__ADDRESS", "127.0.0.1:0"),
        ("GATEWAYD_STOMP__WS__ADDRESS", "127.0.0.1:0"),
        ("GATEWAYD_MQTT__TCP__ADDRESS", "127.0.0.1:0"),
        ("GATEWAYD_MQTT__WS__ADDRESS", "127.0.0.1:0"),
    ]
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
fn check_config_names_a_missing_certificate_file() {
    assert_config_rejected("[loom]\nenabled = true\n[loom.tls]\nself_signed = false\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n", "loom.tls.cert_file");
    assert_config_rejected("[messageloop.ws]\nenabled = true\ntls = { cert_file = \"/nope.pem\", key_file = \"/nope.key\" }\n", "messageloop.ws.tls.cert_file");
}

#[test]
fn check_config_names_the_bad_key() {
    assert_config_rejected(
        "[shutdown]\ndrain_timeout_secs = \"later\"\n",
        "shutdown.drain_timeout_secs",
    );
    assert_config_rejected("[admin]\nlisten = \"127.0.0.1:1\"\n", "listen");
}

#[test]
fn reload_applies_the_log_level_and_reports_what_needs_a_restart() {
    let gateway = Gatewayd::start(&base_config());
    let changed = format!(
        "{}[log]\nlevel = \"debug\"\n[goomerang]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
        base_config()
    );
    std::fs::write(&gateway.config_path, changed).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gatewayctl"))
        .args(["--admin", &gateway.url(""), "reload"])
        .output()
        .unwrap();
    assert_succeeded(&output, "gatewayd reload");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_reload(&report, &["log.level"], &["goomerang"]);
    assert!(report["error"].is_null(), "{report}");

    let report = gateway.rewrite_and_reload("[log]\nlevel = 5\n");
    assert!(
        report["error"]
            .as_str()
            .unwrap_or_default()
            .contains("log.level"),
        "{report}"
    );

    // SIGHUP goes through the same path and the daemon keeps serving.
    gateway.sighup();
    assert_eq!(gateway.get("/readyz").0, 200);
    assert_eq!(gateway.terminate(Duration::from_secs(6)).code(), Some(0));
}
