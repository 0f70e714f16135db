//! Ended connections give their memory back: once many gRPC connections have opened and closed, gatewayd's
//! resident set returns near where it was before they opened.

#[path = "support/messageloop_client.rs"]
mod messageloop_client;
mod support;

use std::time::{Duration, Instant};

use messageloop_client::grpc;
use support::*;

/// Connections opened and closed; each costs tens of KiB while open.
const COUNT: usize = 600;
const MIB: u64 = 1 << 20;

/// gatewayd's resident set size in bytes, from `/proc`.
fn rss(gateway: &Gatewayd) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", gateway.pid())).expect("status");
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .expect("VmRSS");
    kib * 1024
}

#[test]
fn closed_grpc_connections_give_their_memory_back() {
    let gateway = Gatewayd::start(&format!(
        "{}[messageloop.grpc]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
        base_config()
    ));
    let addr = gateway.listener("messageloop.grpc");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let before = rss(&gateway);
    let streams = runtime.block_on(async {
        let mut streams = Vec::with_capacity(COUNT);
        for _ in 0..COUNT {
            streams.push(grpc::connected_g2(addr).await);
        }
        streams
    });
    let open = rss(&gateway);
    assert!(
        open > before + 8 * MIB,
        "{COUNT} open connections took only {} KiB: nothing to give back",
        (open - before) / 1024
    );
    // Closes every connection: the streams and then the runtime their HTTP/2 connections run on.
    drop(streams);
    drop(runtime);
    gateway.wait_for("/api/connections", "every connection to end", |all| {
        all.as_array().is_some_and(|all| all.is_empty())
    });
    let goal = before + (open - before) / 4;
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let now = rss(&gateway);
        if now <= goal {
            return;
        }
        assert!(
            Instant::now() < until,
            "RSS {} MiB after {COUNT} connections closed: {} MiB before they opened, {} MiB while open",
            now / MIB,
            before / MIB,
            open / MIB
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
