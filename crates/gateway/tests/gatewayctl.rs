//! `gatewayctl` against the real gatewayd: `pub`/`sub` round trips over every protocol and across protocols, `sub`
//! ending quietly when its reader closes the pipe, `req`/`reply` between two gatewayctl processes, and short `bench`
//! runs (MessageLoop in protobuf and JSON) whose JSON is checked for its fields and for zero loss (never for speed).

mod support;

#[path = "support/ctl.rs"]
mod ctl;

use std::process::{Command, Stdio};

use ctl::*;
use serde_json::Value;
use support::*;

/// gatewayd with every protocol's listener on an ephemeral loopback port.
fn start() -> Gatewayd {
    Gatewayd::start(&config_enabling(&[
        "stomp.tcp",
        "messageloop.ws",
        "goomerang",
        "loom",
        "chanserv",
        "mqtt.tcp",
    ]))
}

/// The subscription a `sub -p <protocol>` shows in `/api/topics`: (fanout, group members).
fn shape_of(protocol: &str) -> (u64, u64) {
    if protocol == "loom" {
        (0, 1)
    } else {
        (1, 0)
    }
}

/// `sub --count 1 --json` on `sub_protocol`, then `pub` on `pub_protocol`; returns the received JSON.
fn round_trip(gateway: &Gatewayd, pub_protocol: &str, sub_protocol: &str, topic: &str) -> Value {
    let sub = spawn(
        gateway,
        &["sub", "-p", sub_protocol, topic, "--count", "1", "--json"],
    );
    let (fanout, members) = shape_of(sub_protocol);
    wait_subscribed(gateway, topic, fanout, members);
    let payload = format!("hello from {pub_protocol}");
    run(
        gateway,
        &["pub", "-p", pub_protocol, topic, &payload, "-H", "trace=t1"],
    );
    let output = finish(sub);
    assert_succeeded(&output, "sub");
    let received: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(received["payload"], payload.as_str(), "{received}");
    received
}

#[test]
fn pub_sub_round_trip_over_each_protocol() {
    let gateway = start();
    for protocol in PROTOCOLS {
        let received = round_trip(&gateway, protocol, protocol, &format!("ctl.{protocol}"));
        if matches!(protocol, "stomp" | "messageloop" | "goomerang" | "mqtt") {
            assert_eq!(header(&received, "trace"), Some("t1"), "{received}");
        }
    }
}

#[test]
fn pub_sub_across_protocols() {
    let gateway = start();
    let received = round_trip(&gateway, "stomp", "messageloop", "ctl.cross.a");
    assert_eq!(received["topic"], "ctl.cross.a");
    assert_eq!(header(&received, "trace"), Some("t1"), "{received}");
    let received = round_trip(&gateway, "loom", "goomerang", "ctl.cross.b");
    assert_eq!(received["payload"], "hello from loom");
    let received = round_trip(&gateway, "chanserv", "stomp", "ctl.cross.c");
    assert_eq!(received["topic"], "/topic/ctl.cross.c");
    let received = round_trip(&gateway, "mqtt", "stomp", "ctl.cross.d");
    assert_eq!(received["topic"], "/topic/ctl.cross.d");
    assert_eq!(header(&received, "trace"), Some("t1"), "{received}");
    let received = round_trip(&gateway, "stomp", "mqtt", "ctl.cross.e");
    assert_eq!(received["topic"], "ctl.cross.e");
    assert_eq!(header(&received, "trace"), Some("t1"), "{received}");
}

#[test]
fn pub_reads_the_payload_from_stdin_and_publishes_count_times() {
    let gateway = start();
    let sub = spawn(
        &gateway,
        &["sub", "-p", "stomp", "ctl.stdin", "--count", "3"],
    );
    wait_subscribed(&gateway, "ctl.stdin", 1, 0);
    let mut publisher = Command::new(GATEWAYCTL)
        .args([
            "--admin",
            &gateway.url(""),
            "pub",
            "-p",
            "goomerang",
            "ctl.stdin",
            "--count",
            "3",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write as _;
    publisher
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin")
        .unwrap();
    assert!(publisher.wait().unwrap().success());
    let output = finish(sub);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "from stdin\nfrom stdin\nfrom stdin\n"
    );
}

/// `sub` whose reader closes the pipe after the first line (`gatewayctl sub … | head -1`) ends on the next message
/// it would print, with success and no panic.
#[test]
fn sub_ends_quietly_when_its_reader_closes_the_pipe() {
    use std::io::BufRead as _;
    let gateway = start();
    let mut sub = spawn(&gateway, &["sub", "-p", "stomp", "ctl.pipe"]);
    wait_subscribed(&gateway, "ctl.pipe", 1, 0);
    run(&gateway, &["pub", "-p", "stomp", "ctl.pipe", "first"]);
    let mut first = String::new();
    std::io::BufReader::new(sub.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "first\n");
    run(&gateway, &["pub", "-p", "stomp", "ctl.pipe", "second"]);
    let output = finish(sub);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A STOMP responder (`reply`) answers requests from STOMP, MessageLoop, Goomerang and MQTT (`req`), and an MQTT
/// responder answers STOMP and MQTT (reply-to ↔ response topic, correlation id ↔ correlation data).
#[test]
fn req_and_reply_between_two_gatewayctl_processes() {
    let gateway = start();
    let cases = [
        ("stomp", "svc.echo", "svc.echo"),
        ("messageloop", "svc.echo", "$rpc.messageloop.svc.echo"),
        ("goomerang", "Echo", "$rpc.goomerang.Echo"),
        ("mqtt", "svc.echo", "svc.echo"),
    ];
    let mqtt_responder = [
        ("stomp", "svc.mqtt", "svc.mqtt"),
        ("mqtt", "svc.mqtt", "svc.mqtt"),
    ];
    let cases = cases
        .into_iter()
        .map(|case| ("stomp", case))
        .chain(mqtt_responder.into_iter().map(|case| ("mqtt", case)));
    for (responder_protocol, (protocol, target, topic)) in cases {
        let responder = spawn(
            &gateway,
            &["reply", "-p", responder_protocol, topic, "--count", "1"],
        );
        wait_subscribed(&gateway, topic, 1, 0);
        let request = format!("ping over {protocol}");
        let reply = run(
            &gateway,
            &[
                "req",
                "-p",
                protocol,
                target,
                &request,
                "--json",
                "--timeout",
                "20",
            ],
        );
        let reply: Value = serde_json::from_str(&reply).expect("reply JSON");
        assert_eq!(reply["payload"], request.as_str(), "{protocol}: {reply}");
        let output = finish(responder);
        assert!(output.status.success(), "{protocol} responder");
    }
}

#[test]
fn req_refuses_protocols_without_replies() {
    let gateway = start();
    for protocol in ["loom", "chanserv"] {
        let output = finish(spawn(&gateway, &["req", "-p", protocol, "x", "y"]));
        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("cannot receive replies"));
    }
}

fn bench_json(gateway: &Gatewayd, args: &[&str]) -> Value {
    let mut all = vec!["bench", "--json", "--duration", "2"];
    all.extend_from_slice(args);
    let text = run(gateway, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bench JSON ({e}): {text}"))
}

fn assert_complete_run(run: &Value, sub_protocol: &str) {
    for field in [
        "sent",
        "expected",
        "received",
        "lost",
        "loss_ratio",
        "msgs_per_sec_out",
        "msgs_per_sec_in",
        "duration_secs",
    ] {
        assert!(run[field].is_number(), "{field} in {run}");
    }
    for field in ["p50", "p90", "p99", "p99_9", "max", "mean"] {
        assert!(
            run["latency_us"][field].is_number(),
            "latency {field} in {run}"
        );
    }
    assert_eq!(run["sub_protocol"], sub_protocol);
    assert!(run["sent"].as_u64().unwrap() > 0, "{run}");
    assert_eq!(run["lost"], 0, "{run}");
    assert_eq!(run["received"], run["expected"], "{run}");
}

#[test]
fn bench_smoke_fixed_rate_reports_every_field_and_no_loss() {
    let gateway = start();
    let report = bench_json(
        &gateway,
        &[
            "--protocol",
            "stomp",
            "-n",
            "2",
            "-m",
            "2",
            "--rate",
            "500",
            "--size",
            "64",
        ],
    );
    let run = &report["gatewayd"];
    assert_complete_run(run, "stomp");
    assert_eq!(run["expected"], run["sent"].as_u64().unwrap() * 2);
    assert_eq!(run["payload_bytes"], 64);
    assert!(report["nats"].is_null());

    let report = bench_json(
        &gateway,
        &[
            "--pub-protocol",
            "messageloop",
            "--sub-protocol",
            "goomerang",
            "--rate",
            "500",
        ],
    );
    assert_complete_run(&report["gatewayd"], "goomerang");
}

/// Bench runs whose MessageLoop sides `flag` changes report them as `name`: MessageLoop on both sides, and STOMP to
/// MessageLoop; without a MessageLoop side the flag is refused.
fn assert_messageloop_sides(gateway: &Gatewayd, flag: &str, name: &str) {
    let report = bench_json(
        gateway,
        &[
            "--protocol",
            "messageloop",
            flag,
            "-m",
            "2",
            "--rate",
            "500",
        ],
    );
    let run = &report["gatewayd"];
    assert_complete_run(run, name);
    assert_eq!(run["pub_protocol"], name);
    assert_eq!(run["expected"], run["sent"].as_u64().unwrap() * 2);

    let report = bench_json(
        gateway,
        &[
            "--pub-protocol",
            "stomp",
            "--sub-protocol",
            "messageloop",
            flag,
            "--rate",
            "500",
        ],
    );
    assert_complete_run(&report["gatewayd"], name);
    assert_eq!(report["gatewayd"]["pub_protocol"], "stomp");

    let output = finish(spawn(gateway, &["bench", "--protocol", "stomp", flag]));
    assert!(!output.status.success());
    let expected = format!("{flag} needs a MessageLoop side");
    assert!(String::from_utf8_lossy(&output.stderr).contains(&expected));
}

#[test]
fn bench_ml_json_runs_messageloop_sides_in_json() {
    assert_messageloop_sides(&start(), "--ml-json", "messageloop-json");
}

/// `--ml-grpc`: MessageLoop sides open G2 gRPC streams on `messageloop.grpc` (the WebSocket listener is off).
#[test]
fn bench_ml_grpc_runs_messageloop_sides_over_grpc() {
    let gateway = Gatewayd::start(&config_enabling(&["stomp.tcp", "messageloop.grpc"]));
    assert_messageloop_sides(&gateway, "--ml-grpc", "messageloop-grpc");
    let output = finish(spawn(
        &gateway,
        &[
            "bench",
            "--protocol",
            "messageloop",
            "--ml-grpc",
            "--ml-json",
        ],
    ));
    assert!(!output.status.success());
}

#[test]
fn bench_conns_reports_memory_per_connection() {
    let gateway = start();
    let pid = gateway.pid().to_string();
    for args in [
        vec!["--protocol", "stomp", "--count", "20", "--pid", &pid],
        vec!["--protocol", "messageloop", "--count", "20"],
    ] {
        let mut all = BENCH_CONNS.to_vec();
        all.extend(args);
        let report: Value = serde_json::from_str(&run(&gateway, &all)).expect("JSON");
        assert_eq!(report["connections"], 20, "{report}");
        assert!(report["rss_after_bytes"].as_u64().unwrap() > 0, "{report}");
        assert!(report["bytes_per_connection"].is_number(), "{report}");
    }
}

#[test]
fn bench_conns_opens_messageloop_and_goomerang_websockets_over_tls() {
    let gateway = Gatewayd::start_with_env(
        &config_enabling(&["messageloop.ws", "goomerang"]),
        &[
            ("GATEWAYD_MESSAGELOOP__WS__TLS__SELF_SIGNED", "true"),
            ("GATEWAYD_GOOMERANG__TLS__SELF_SIGNED", "true"),
        ],
    );
    for protocol in ["messageloop", "goomerang"] {
        let plain = [&BENCH_CONNS[..], &["--count", "3", "--protocol", protocol]].concat();
        let tls = [&plain[..], &["--tls"]].concat();
        let report: Value = serde_json::from_str(&run(&gateway, &tls)).expect("JSON");
        assert_eq!(report["connections"], 3, "{report}");
        assert_eq!(report["transport"], "websocket+tls", "{report}");
        // Without --tls the client speaks plain WebSocket to the TLS listener: the upgrade fails.
        let refused = finish(spawn(&gateway, &plain));
        assert!(
            !refused.status.success(),
            "{protocol} over ws:// reached a TLS listener"
        );
    }
}

#[test]
fn process_endpoint_names_gatewayd() {
    let gateway = start();
    let process = gateway.get_json("/api/process");
    assert_eq!(process["pid"], gateway.pid());
    assert!(process["rss_bytes"].as_u64().unwrap() > 1 << 20);
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(process["worker_threads"], cpus, "{process}");
}

#[test]
fn worker_threads_follow_the_runtime_section() {
    // One more than the default, so the default cannot pass for it.
    let wanted = std::thread::available_parallelism().unwrap().get() + 1;
    let gateway = Gatewayd::start_with_env(
        &config_enabling(&["stomp.tcp"]),
        &[("GATEWAYD_RUNTIME__WORKER_THREADS", &wanted.to_string())],
    );
    let process = gateway.get_json("/api/process");
    assert_eq!(process["worker_threads"], wanted, "{process}");
}

#[test]
fn tap_follows_messages_of_every_protocol_on_a_pattern() {
    let gateway = start();
    let tap = spawn(&gateway, &["tap", "orders.#", "--count", "2", "--json"]);
    // A pattern is not a topic of /api/topics: the subscription gauge shows the tap.
    wait_for_subscriptions(&gateway, 1.0);
    run(
        &gateway,
        &["pub", "-p", "stomp", "orders.eu", "from stomp", "-H", "k=v"],
    );
    run(
        &gateway,
        &["pub", "-p", "messageloop", "elsewhere", "not tapped"],
    );
    run(
        &gateway,
        &["pub", "-p", "messageloop", "orders.us", "from messageloop"],
    );
    let output = finish(tap);
    assert_succeeded(&output, "tap");
    let tapped: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(tapped.len(), 2, "{tapped:?}");
    assert_eq!(tapped[0]["origin"], "stomp");
    assert_eq!(tapped[0]["topic"], "orders.eu");
    assert_eq!(tapped[0]["payload"], "from stomp");
    assert_eq!(tapped[0]["size"], 10);
    assert_eq!(header(&tapped[0], "k"), Some("v"));
    assert_eq!(tapped[1]["origin"], "messageloop");
    assert_eq!(tapped[1]["topic"], "orders.us");
    assert_eq!(tapped[1]["payload"], "from messageloop");
    // The tap's subscription ends with it.
    wait_for_subscriptions(&gateway, 0.0);
}

fn wait_for_subscriptions(gateway: &Gatewayd, count: f64) {
    let until = std::time::Instant::now() + DEADLINE;
    while gateway.metric("gatewayd_subscriptions", &[]) != count {
        assert!(
            std::time::Instant::now() < until,
            "gatewayd_subscriptions never reached {count}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn chanserv_publishes_beyond_the_stream_table_on_one_connection() {
    // Every chanserv publish is a request on a stream of its own, and closed streams linger 10 s: 4,200
    // publishes on one connection outnumber the 4,096-stream table many times over within the linger.
    let gateway = start();
    run(
        &gateway,
        &["pub", "-p", "chanserv", "burst.t", "x", "--count", "4200"],
    );
    assert_eq!(
        gateway.metric("gatewayd_messages_in_total", &[("protocol", "chanserv")]),
        4200.0
    );
}
