//! Auth kept in a file of its own (the Helm chart's auth Secret, given as a second `--config`): its tokens are
//! enforced over a real STOMP socket, a reload (SIGHUP or `POST /api/reload`) re-reads it without a restart, and
//! `check-config` checks the merged pair, naming the file of a bad key. A JWT public key rotated in place (same path,
//! new bytes) is applied by a reload too.

mod support;

#[path = "support/stomp_client.rs"]
mod stomp_client;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use stomp_client::{app_token_auth, frames, Frame, Peer};
use support::*;

const WAIT: Duration = Duration::from_secs(5);

/// The main file: one STOMP listener and an auth table with a token of its own, which the auth file's token list
/// replaces.
fn main_config() -> String {
    base_config()
        + r#"
[stomp.auth]
required = false

[[stomp.auth.tokens]]
login = "app"
token = "from-main"
identity = { name = "app" }

[stomp.tcp]
enabled = true
address = "127.0.0.1:0"
"#
}

/// CONNECT's answer: CONNECTED or ERROR.
fn login(gateway: &Gatewayd, connect: &Frame) -> String {
    let mut peer = Peer::open(gateway.listener("stomp.tcp"));
    peer.send(connect);
    peer.expect_frame(WAIT).command
}

fn login_as_app(gateway: &Gatewayd, passcode: &str) -> String {
    login(gateway, &frames::connect("app", passcode))
}

#[test]
fn tokens_come_from_the_auth_file_and_a_reload_rereads_it() {
    let gateway = Gatewayd::start_with_files(&main_config(), &[&app_token_auth("token-a")]);
    assert_eq!(login_as_app(&gateway, "token-a"), "CONNECTED");
    assert_eq!(login_as_app(&gateway, "wrong"), "ERROR");
    assert_eq!(login_as_app(&gateway, "from-main"), "ERROR");
    assert_eq!(
        login(&gateway, &Frame::new("CONNECT")),
        "ERROR",
        "required = true from the auth file"
    );

    // SIGHUP: applied in the background, so poll for the new token.
    std::fs::write(&gateway.extra_paths[0], app_token_auth("token-b")).unwrap();
    gateway.sighup();
    let deadline = Instant::now() + Duration::from_secs(20);
    while login_as_app(&gateway, "token-b") != "CONNECTED" {
        assert!(Instant::now() < deadline, "SIGHUP did not apply token-b");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(login_as_app(&gateway, "token-a"), "ERROR");

    // POST /api/reload answers once applied.
    std::fs::write(&gateway.extra_paths[0], app_token_auth("token-c")).unwrap();
    let report: serde_json::Value = gateway.reload();
    assert!(report["error"].is_null(), "{report}");
    assert_eq!(
        report["applied"],
        serde_json::json!(["stomp.tcp"]),
        "{report}"
    );
    assert_eq!(login_as_app(&gateway, "token-c"), "CONNECTED");
    assert_eq!(login_as_app(&gateway, "token-b"), "ERROR");
    assert_eq!(gateway.terminate(Duration::from_secs(6)).code(), Some(0));
}

/// Writes `main` and `auth` to files and runs `check-config` on the pair.
fn check_pair(main: &str, auth: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = ["gatewayd.toml", "auth.toml"]
        .iter()
        .map(|name| dir.path().join(name))
        .collect();
    std::fs::write(&paths[0], main).unwrap();
    std::fs::write(&paths[1], auth).unwrap();
    let (ok, output) = check_config_files(&paths);
    (ok, output, paths[1].display().to_string())
}

#[test]
fn check_config_checks_the_merged_files_and_names_the_bad_one() {
    let (ok, output, _) = check_pair(&main_config(), &app_token_auth("token-a"));
    assert!(ok, "{output}");

    let (ok, output, auth) = check_pair(&main_config(), "[stomp.auth]\nrequired = \"yes\"\n");
    assert!(!ok);
    assert!(
        output.contains(&format!("{auth}: stomp.auth.required")),
        "{output}"
    );

    let (ok, output, auth) = check_pair(
        &main_config(),
        "[stomp.auth.jwt]\nalgorithm = \"RS256\"\npublic_key_file = \"/nonexistent/jwt.pem\"\n",
    );
    assert!(!ok);
    assert!(
        output.contains(&format!("{auth}: stomp.auth.jwt.public_key_file")),
        "{output}"
    );
}

/// Two RS256 key pairs made for this test only (`openssl genpkey -algorithm RSA`).
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn signed_by(private_key: &str) -> String {
    let pem = std::fs::read(fixture(private_key)).unwrap();
    let claims = serde_json::json!({ "sub": "rotated", "exp": 4_102_444_800u64 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

#[test]
fn a_jwt_key_rotated_in_place_is_applied_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.pem");
    std::fs::copy(fixture("a.pub"), &key).unwrap();
    let auth = format!(
        "[stomp.auth]\nrequired = true\n\n[stomp.auth.jwt]\nalgorithm = \"RS256\"\npublic_key_file = \"{}\"\n",
        key.display()
    );
    let gateway = Gatewayd::start_with_files(&main_config(), &[&auth]);
    let (token_a, token_b) = (signed_by("a.key"), signed_by("b.key"));
    assert_eq!(login_as_app(&gateway, &token_a), "CONNECTED");
    assert_eq!(login_as_app(&gateway, &token_b), "ERROR");

    // Same path, new key: what a re-mounted Kubernetes Secret does.
    std::fs::copy(fixture("b.pub"), &key).unwrap();
    let report: serde_json::Value = gateway.reload();
    assert_eq!(
        report["applied"],
        serde_json::json!(["stomp.tcp"]),
        "{report}"
    );
    assert_eq!(login_as_app(&gateway, &token_b), "CONNECTED");
    assert_eq!(login_as_app(&gateway, &token_a), "ERROR");

    // Nothing changed: nothing is applied again.
    let report: serde_json::Value = gateway.reload();
    assert_eq!(report["applied"], serde_json::json!([]), "{report}");
    assert_eq!(gateway.terminate(Duration::from_secs(6)).code(), Some(0));
}
