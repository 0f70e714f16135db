//! `gatewayctl` against a gatewayd whose listeners all require a static token: `--token`/`--login` (or
//! `GATEWAYCTL_TOKEN`/`GATEWAYCTL_LOGIN`) get `pub`, `sub`, `bench` and `bench conns` (STOMP over TCP and
//! WebSocket) through over real sockets, Goomerang with the token on the upgrade, chanserv with an `AUTH` line and
//! MQTT with the login and token as CONNECT's user name and password;
//! a missing or wrong token fails with a non-zero exit (and an error naming the refusal where the protocol says).

mod support;

#[path = "support/ctl.rs"]
mod ctl;

use std::process::Output;

use ctl::*;
use serde_json::Value;
use support::*;

/// CONNECT headers are not escaped: `:` and `\` must reach gatewayd as they are.
const STOMP_LOGIN: &str = "ctl:ops";
const STOMP_TOKEN: &str = r"stomp:se\cret";
const MESSAGELOOP_TOKEN: &str = "messageloop-secret";
const LOOM_TOKEN: &str = "loom-secret";
const GOOMERANG_TOKEN: &str = "goomerang-secret";
const CHANSERV_TOKEN: &str = "chanserv-secret";
const MQTT_LOGIN: &str = "ctl";
const MQTT_TOKEN: &str = "mqtt-secret";

/// gatewayd whose listeners each require their own token.
fn start() -> Gatewayd {
    let config = format!(
        r#"{base}
[stomp.auth]
required = true
[[stomp.auth.tokens]]
login = '{STOMP_LOGIN}'
token = '{STOMP_TOKEN}'
identity = {{ name = "ctl" }}
[stomp.tcp]
enabled = true
address = "127.0.0.1:0"
[stomp.ws]
enabled = true
address = "127.0.0.1:0"

[messageloop.auth]
required = true
[[messageloop.auth.tokens]]
token = "{MESSAGELOOP_TOKEN}"
identity = {{ name = "ctl" }}
[messageloop.ws]
enabled = true
address = "127.0.0.1:0"

[loom]
enabled = true
address = "127.0.0.1:0"
reject_delay_ms = 0
[loom.auth]
required = true
[[loom.auth.tokens]]
token = "{LOOM_TOKEN}"
identity = {{ name = "ctl" }}

[goomerang]
enabled = true
address = "127.0.0.1:0"
[goomerang.auth]
required = true
[[goomerang.auth.tokens]]
token = "{GOOMERANG_TOKEN}"
identity = {{ name = "ctl" }}

[chanserv]
enabled = true
address = "127.0.0.1:0"
[chanserv.auth]
required = true
[[chanserv.auth.tokens]]
token = "{CHANSERV_TOKEN}"
identity = {{ name = "ctl" }}

[mqtt.auth]
required = true
[[mqtt.auth.tokens]]
login = "{MQTT_LOGIN}"
token = "{MQTT_TOKEN}"
identity = {{ name = "ctl" }}
[mqtt.tcp]
enabled = true
address = "127.0.0.1:0"
"#,
        base = base_config()
    );
    Gatewayd::start(&config)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `sub --count 1 --json` with `sub_args`, then `pub` with `pub_args`; returns what the subscriber printed.
fn round_trip(
    gateway: &Gatewayd,
    topic: &str,
    sub_args: &[&str],
    pub_args: &[&str],
    members: (u64, u64),
) -> Value {
    let mut args = vec!["sub", topic, "--count", "1", "--json"];
    args.extend_from_slice(sub_args);
    let sub = spawn(gateway, &args);
    wait_subscribed(gateway, topic, members.0, members.1);
    let mut args = vec!["pub", topic, "with credentials"];
    args.extend_from_slice(pub_args);
    run(gateway, &args);
    let output = finish(sub);
    assert!(output.status.success(), "sub failed: {}", stderr(&output));
    let received: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(received["payload"], "with credentials", "{received}");
    received
}

/// Runs a client subcommand that must be refused; returns its stderr.
fn refused(gateway: &Gatewayd, args: &[&str]) -> String {
    let output = finish(spawn(gateway, args));
    assert!(
        !output.status.success(),
        "gatewayctl {args:?} succeeded without valid credentials"
    );
    let text = stderr(&output);
    assert!(text.contains("refused"), "{args:?}: {text}");
    text
}

#[test]
fn the_right_token_gets_pub_and_sub_through() {
    let gateway = start();
    let stomp = [
        "-p",
        "stomp",
        "--login",
        STOMP_LOGIN,
        "--token",
        STOMP_TOKEN,
    ];
    let messageloop = ["-p", "messageloop", "--token", MESSAGELOOP_TOKEN];
    round_trip(&gateway, "auth.stomp", &stomp, &stomp, (1, 0));
    round_trip(&gateway, "auth.ml", &messageloop, &messageloop, (1, 0));
    let received = round_trip(&gateway, "auth.cross", &messageloop, &stomp, (1, 0));
    assert_eq!(received["topic"], "auth.cross");
    let loom = ["-p", "loom", "--token", LOOM_TOKEN];
    round_trip(&gateway, "auth.loom", &loom, &loom, (0, 1));
}

#[test]
fn the_token_and_login_can_come_from_the_environment() {
    let gateway = start();
    let env = [
        ("GATEWAYCTL_LOGIN", STOMP_LOGIN),
        ("GATEWAYCTL_TOKEN", STOMP_TOKEN),
    ];
    let sub = spawn_with_env(
        &gateway,
        &["sub", "-p", "stomp", "auth.env", "--count", "1"],
        &env,
    );
    wait_subscribed(&gateway, "auth.env", 1, 0);
    let publisher = finish(spawn_with_env(
        &gateway,
        &["pub", "-p", "stomp", "auth.env", "from env"],
        &env,
    ));
    assert!(publisher.status.success(), "{}", stderr(&publisher));
    let output = finish(sub);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "from env\n");
}

#[test]
fn a_missing_or_wrong_token_is_refused_with_a_readable_error() {
    let gateway = start();
    for credentials in [
        &[][..],
        &["--login", STOMP_LOGIN, "--token", "wrong"],
        &["--login", "someone-else", "--token", STOMP_TOKEN],
    ] {
        for command in [
            &["pub", "-p", "stomp", "auth.refused", "x"][..],
            &["sub", "-p", "stomp", "auth.refused"],
        ] {
            let args = [command, credentials].concat();
            let text = refused(&gateway, &args);
            assert!(text.contains("Bad CONNECT"), "{args:?}: {text}");
        }
    }
    let text = refused(&gateway, &["pub", "-p", "messageloop", "auth.refused", "x"]);
    assert!(text.contains("AUTH_REQUIRED"), "{text}");
    let text = refused(
        &gateway,
        &[
            "sub",
            "-p",
            "messageloop",
            "auth.refused",
            "--token",
            STOMP_TOKEN,
        ],
    );
    assert!(text.contains("AUTH_ERROR"), "{text}");
    for token in ["wrong", ""] {
        let text = refused(
            &gateway,
            &["sub", "-p", "loom", "auth.refused", "--token", token],
        );
        assert!(text.contains("refused the Loom stream"), "{text}");
    }
}

#[test]
fn goomerang_and_chanserv_present_the_token() {
    let gateway = start();
    let goomerang = ["-p", "goomerang", "--token", GOOMERANG_TOKEN];
    round_trip(&gateway, "auth.goom", &goomerang, &goomerang, (1, 0));
    let chanserv = ["-p", "chanserv", "--token", CHANSERV_TOKEN];
    round_trip(&gateway, "auth.chan", &chanserv, &chanserv, (1, 0));
    for protocol in ["goomerang", "chanserv"] {
        for token in [None, Some("wrong")] {
            let mut args = vec!["pub", "-p", protocol, "auth.none", "x"];
            args.extend(token.iter().flat_map(|t| ["--token", *t]));
            let output = finish(spawn(&gateway, &args));
            assert!(
                !output.status.success(),
                "{protocol} {token:?}: published without valid credentials"
            );
        }
    }
    assert!(
        refused(&gateway, &["pub", "-p", "chanserv", "auth.none", "x"])
            .contains("credentials required")
    );
}

#[test]
fn bench_presents_the_credentials_on_both_sides() {
    let gateway = start();
    let shape = ["bench", "--json", "--duration", "1", "--rate", "200"];
    let mut args = shape.to_vec();
    args.extend(["--login", STOMP_LOGIN, "--token", STOMP_TOKEN]);
    let report: Value = serde_json::from_str(&run(&gateway, &args)).expect("bench JSON");
    let run = &report["gatewayd"];
    assert!(run["sent"].as_u64().is_some_and(|sent| sent > 0), "{run}");
    assert_eq!(run["received"], run["expected"], "{run}");
    assert_eq!(run["lost"], 0, "{run}");
    let text = refused(&gateway, &shape);
    assert!(text.contains("Bad CONNECT"), "{text}");
}

#[test]
fn bench_conns_logs_in_over_stomp_tcp_and_websocket() {
    let gateway = start();
    for transport in [&[][..], &["--ws"]] {
        let shape = [&BENCH_CONNS[..], &["--count", "2"], transport].concat();
        let mut args = shape.clone();
        args.extend(["--login", STOMP_LOGIN, "--token", STOMP_TOKEN]);
        let report: Value = serde_json::from_str(&run(&gateway, &args)).expect("JSON");
        assert_eq!(report["connections"], 2, "{report}");
        let text = refused(&gateway, &[&shape[..], &["--token", "wrong"]].concat());
        assert!(text.contains("Bad CONNECT"), "{text}");
    }
}

#[test]
fn mqtt_presents_the_login_and_token() {
    let gateway = start();
    let mqtt = ["-p", "mqtt", "--login", MQTT_LOGIN, "--token", MQTT_TOKEN];
    round_trip(&gateway, "auth.mqtt", &mqtt, &mqtt, (1, 0));
    for args in [
        vec!["pub", "-p", "mqtt", "auth.none", "x"],
        vec!["pub", "-p", "mqtt", "auth.none", "x", "--token", "wrong"],
        vec![
            "pub",
            "-p",
            "mqtt",
            "auth.none",
            "x",
            "--login",
            "other",
            "--token",
            MQTT_TOKEN,
        ],
    ] {
        let text = refused(&gateway, &args);
        assert!(text.contains("CONNACK"), "{args:?}: {text}");
    }
}
