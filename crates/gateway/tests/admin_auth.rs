//! The admin listener's access rules over a real socket: the bearer token on the JSON API and reload, open probes
//! and metrics, a browser's cross-site reload refused with or without a token configured, a token required off
//! loopback, and gatewayctl presenting the token.

mod support;

#[path = "support/ctl.rs"]
mod ctl;

use reqwest::blocking::Client;
use support::*;

const TOKEN: &str = "admin-s3cret-token";

fn with_token() -> Gatewayd {
    Gatewayd::start(&format!(
        "[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n"
    ))
}

fn status(request: reqwest::blocking::RequestBuilder) -> u16 {
    request.send().expect("admin request").status().as_u16()
}

#[test]
fn the_token_guards_the_api_and_reload_while_probes_and_metrics_stay_open() {
    let gateway = with_token();
    let http = Client::new();
    assert_eq!(status(http.get(gateway.url("/livez"))), 200);
    assert_eq!(status(http.get(gateway.url("/readyz"))), 200);
    assert_eq!(status(http.get(gateway.url("/healthz"))), 200);
    assert_eq!(status(http.get(gateway.url("/metrics"))), 200);
    assert_eq!(status(http.get(gateway.url("/api/topics"))), 401);
    assert_eq!(
        status(
            http.get(gateway.url("/api/connections"))
                .bearer_auth("wrong")
        ),
        401
    );
    assert_eq!(
        status(http.get(gateway.url("/api/topics")).bearer_auth(TOKEN)),
        200
    );
    assert_eq!(status(http.post(gateway.url("/api/reload"))), 401);
    assert_eq!(
        status(http.post(gateway.url("/api/reload")).bearer_auth("wrong")),
        401
    );
    assert_eq!(
        status(
            http.post(gateway.url("/api/reload"))
                .bearer_auth(TOKEN)
                .header("Origin", "https://evil.example")
        ),
        403
    );
    assert_eq!(
        status(http.post(gateway.url("/api/reload")).bearer_auth(TOKEN)),
        200
    );
}

#[test]
fn a_cross_site_reload_is_refused_without_a_token_configured() {
    let gateway = Gatewayd::start(&base_config());
    let http = Client::new();
    assert_eq!(
        status(
            http.post(gateway.url("/api/reload"))
                .header("Origin", "https://evil.example")
        ),
        403
    );
    assert_eq!(status(http.post(gateway.url("/api/reload"))), 200);
    assert_eq!(status(http.get(gateway.url("/api/topics"))), 200);
}

#[test]
fn reads_and_metrics_follow_their_settings() {
    let gateway = Gatewayd::start(&format!(
        "[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\napi_reads = \"open\"\nmetrics = \"token\"\n"
    ));
    let http = Client::new();
    assert_eq!(status(http.get(gateway.url("/api/topics"))), 200);
    assert_eq!(status(http.get(gateway.url("/metrics"))), 401);
    assert_eq!(
        status(http.get(gateway.url("/metrics")).bearer_auth(TOKEN)),
        200
    );
    assert_eq!(status(http.post(gateway.url("/api/reload"))), 401);
}

#[test]
fn a_token_is_required_off_loopback_and_read_from_its_file() {
    assert_config_rejected("[admin]\naddress = \"0.0.0.0:9091\"\n", "admin.token");
    assert_config_rejected(
        "[admin]\naddress = \"0.0.0.0:9091\"\ntoken_file = \"/nonexistent/admin-token\"\n",
        "admin.token_file",
    );
    let (ok, output) = check_config("[admin]\ntoken = \"a\"\ntoken_file = \"/etc/hostname\"\n");
    assert!(!ok, "{output}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let (ok, output) = check_config(&format!(
        "[admin]\naddress = \"0.0.0.0:9091\"\ntoken_file = \"{}\"\n",
        file.display()
    ));
    assert!(ok, "{output}");
    let gateway = Gatewayd::start(&format!(
        "[admin]\naddress = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
        file.display()
    ));
    let http = Client::new();
    assert_eq!(status(http.get(gateway.url("/api/topics"))), 401);
    assert_eq!(
        status(http.get(gateway.url("/api/topics")).bearer_auth(TOKEN)),
        200
    );
}

#[test]
fn gatewayctl_presents_the_admin_token() {
    let gateway = with_token();
    let refused = ctl::finish(ctl::spawn(&gateway, &["topics"]));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("GATEWAYCTL_ADMIN_TOKEN"),
        "{stderr}"
    );

    let listed = ctl::finish(ctl::spawn_with_env(
        &gateway,
        &["topics"],
        &[("GATEWAYCTL_ADMIN_TOKEN", TOKEN)],
    ));
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let reloaded = ctl::finish(ctl::spawn(&gateway, &["--admin-token", TOKEN, "reload"]));
    assert!(
        reloaded.status.success(),
        "{}",
        String::from_utf8_lossy(&reloaded.stderr)
    );
}
