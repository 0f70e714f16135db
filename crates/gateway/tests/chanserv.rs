//! chanserv over AstraNet against the real gatewayd binary, with a test client written from
//! docs/protocols/chanserv.md ("Wire format"):
//! handshake and service lookup, subscribe requests with several sources, publish by request from one client to
//! another, compressed and plain frames, the stream window as back-pressure, keepalive, half-close, and bad input
//! that must hurt only the stream or connection it came on.

#[path = "support/chanserv_client.rs"]
mod chanserv_client;
mod support;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use chanserv_client::*;
use support::*;

fn start(extra: &str) -> (Gatewayd, SocketAddr) {
    let gateway = Gatewayd::start(&(config_enabling(&["chanserv"]) + extra));
    let addr = gateway.listener("chanserv.tcp");
    (gateway, addr)
}

/// Waits until the chanserv connections hold `n` bus subscriptions in all.
fn wait_subscriptions(gateway: &Gatewayd, n: u64) {
    gateway.wait_for("/api/connections", "chanserv subscriptions", |all| {
        all.as_array()
            .map(|list| {
                list.iter()
                    .filter(|c| c["protocol"] == "chanserv")
                    .filter_map(|c| c["subscriptions"].as_u64())
                    .sum::<u64>()
            })
            .unwrap_or(0)
            == n
    });
}

#[test]
fn handshake_and_service_lookup() {
    let (gateway, addr) = start("service_name = \"chanserv.prod\"\n");
    let client = Client::connect(addr);
    assert_ne!(client.server, 0, "gatewayd sends its node id in HANDSHAKE");
    assert!(client.server < 1 << 63);
    let raddr: serde_json::Value = serde_json::from_str(&client.raddr).unwrap();
    assert!(
        raddr["RAddr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{raddr}"
    );
    assert_eq!(
        client.service,
        Some(("chanserv.prod".to_owned(), (1 << 24) + 1))
    );
    assert_eq!(&client.seen[..2], &[HANDSHAKE, SERVICE]);
    gateway.wait_for("/api/connections", "the connection listed", |all| {
        all.as_array().is_some_and(|l| {
            l.iter()
                .any(|c| c["protocol"] == "chanserv" && c["listener"] == "chanserv.tcp")
        })
    });
}

#[test]
fn subscribe_and_publish_between_two_clients() {
    let (gateway, addr) = start("");
    let mut reader = Client::connect(addr);
    let (master, sources) = reader.subscribe("orders.eu\norders.us", 2);
    assert_eq!(sources[0].0, "topic=orders.eu\n");
    assert_eq!(sources[1].0, "topic=orders.us\n");
    let (eu, us) = (sources[0].1, sources[1].1);
    let wild = reader.post(b"metrics.>");
    let (status, _) = reader.next_source(wild).expect("answered at once");
    assert_eq!(status, "status=subscribed\n");
    wait_subscriptions(&gateway, 3);

    let mut writer = Client::connect(addr);
    assert_eq!(writer.publish("orders.eu", b"first"), "ok");
    assert_eq!(writer.publish("orders.us", b"second"), "ok");
    assert_eq!(writer.publish("orders.eu", b""), "ok");
    assert_eq!(
        writer.publish("orders.eu", b"lz4!not compressed, just looks like it"),
        "ok"
    );
    assert_eq!(writer.publish("metrics.cpu", b"42"), "ok");

    assert_eq!(reader.read_item(eu).unwrap(), b"first");
    assert_eq!(reader.read_item(eu).unwrap(), b"");
    assert_eq!(
        reader.read_item(eu).unwrap(),
        b"lz4!not compressed, just looks like it"
    );
    assert_eq!(reader.read_item(us).unwrap(), b"second");
    let (header, cpu) = reader
        .next_source(wild)
        .expect("a source for the new topic");
    assert_eq!(header, "topic=metrics.cpu\n");
    let cpu = reader.open(cpu);
    assert_eq!(reader.read_item(cpu).unwrap(), b"42");
    assert!(!reader.finished(master), "live subscriptions stay open");

    let master_err = writer.post(b"orders.*;from=yesterday");
    let (header, _) = writer.next_source(master_err).unwrap();
    assert!(header.starts_with("err "), "{header}");
}

#[test]
fn compressed_and_plain_frames() {
    let (gateway, addr) = start("compression = \"lz4\"\n");
    let mut reader = Client::connect(addr);
    let (_, sources) = reader.subscribe("logs", 1);
    let channel = sources[0].1;
    wait_subscriptions(&gateway, 1);
    let mut writer = Client::connect(addr);
    let repetitive = "all work and no play ".repeat(50).into_bytes();
    writer.publish("logs", &repetitive);
    writer.publish("logs", b"0123456789abcdefXYZ");
    let compressed = reader.read_frame(channel).unwrap();
    assert_eq!(&compressed[..4], b"lz4!");
    assert!(compressed.len() < repetitive.len() / 4);
    assert_eq!(decode_item(&compressed), repetitive);
    assert_eq!(
        reader.read_frame(channel).unwrap(),
        b"0123456789abcdefXYZ",
        "incompressible items go out plain, never as an empty lz4 frame"
    );
}

#[test]
fn window_exhaustion_pauses_delivery_and_rewind_resumes_it() {
    let (gateway, addr) = start("");
    let mut reader = Client::connect(addr);
    let (_, sources) = reader.subscribe("bulk", 1);
    let channel = sources[0].1;
    reader.streams.get_mut(&channel).unwrap().hold_rewind = true;
    wait_subscriptions(&gateway, 1);

    let mut writer = Client::connect(addr);
    let count = 100;
    for n in 0..count {
        let item = vec![n as u8; 2000];
        assert_eq!(writer.publish("bulk", &item), "ok");
    }
    reader.until("one window", |c| c.streams[&channel].received >= WINDOW);
    reader.idle(Duration::from_millis(300));
    assert_eq!(
        reader.streams[&channel].received, WINDOW,
        "nothing beyond the window without REWIND"
    );
    reader.release_rewind(channel);
    for n in 0..count {
        assert_eq!(
            reader.read_item(channel).unwrap(),
            vec![n as u8; 2000],
            "item {n}"
        );
    }
    assert_eq!(
        gateway.metric("gatewayd_drops_total", &[("protocol", "chanserv")]),
        0.0
    );
}

#[test]
fn idle_links_are_kept_alive_with_ping() {
    let (_gateway, addr) = start("");
    let mut client = Client::connect(addr);
    client.send(&Op::new(PING, (0, 0), (0, 0), &[]));
    client.until("PONG", |c| c.pongs == 1);
    client.until("a PING after 5 s without traffic", |c| c.pings >= 1);
    let (_, sources) = client.subscribe("still.alive", 1);
    assert!(!client.finished(sources[0].1));
}

#[test]
fn half_close_of_a_channel_and_of_the_master() {
    let (gateway, addr) = start("");
    let mut reader = Client::connect(addr);
    let (master, sources) = reader.subscribe("a\nb", 2);
    let (a, b) = (sources[0].1, sources[1].1);
    wait_subscriptions(&gateway, 2);
    reader.close(a);
    reader.until("FIN2 for the closed channel", |c| c.streams[&a].fin);
    let mut writer = Client::connect(addr);
    writer.publish("a", b"nobody reads this");
    writer.publish("b", b"still flowing");
    assert_eq!(reader.read_item(b).unwrap(), b"still flowing");
    reader.close(master);
    assert_eq!(
        reader.read_frame(b),
        None,
        "closing the master ends every source"
    );
    assert_eq!(reader.read_frame(master), None);
    wait_subscriptions(&gateway, 0);
}

/// A subscriber that must keep receiving while other streams or connections misbehave.
struct Witness {
    client: Client,
    channel: u32,
}

impl Witness {
    fn new(gateway: &Gatewayd, addr: SocketAddr) -> Witness {
        let mut client = Client::connect(addr);
        let (_, sources) = client.subscribe("witness", 1);
        wait_subscriptions(gateway, 1);
        Witness {
            client,
            channel: sources[0].1,
        }
    }

    fn check(&mut self, addr: SocketAddr, payload: &[u8]) {
        Client::connect(addr).publish("witness", payload);
        assert_eq!(self.client.read_item(self.channel).unwrap(), payload);
    }
}

#[test]
fn unknown_opcodes_and_dials_to_unknown_ports_are_dropped() {
    let (gateway, addr) = start("");
    let mut witness = Witness::new(&gateway, addr);
    let mut client = Client::connect(addr);
    let server = client.server;
    client.send(&Op::new(
        0x55,
        (server, 7),
        (client.host, 9),
        b"what is this",
    ));
    let lost = client.dial((server, 4242));
    client.idle(Duration::from_millis(300));
    assert!(
        !client.streams[&lost].syn,
        "no SYN for a DIAL to an unbound port"
    );
    assert!(!client.closed);
    let (_, sources) = client.subscribe("same.connection", 1);
    wait_subscriptions(&gateway, 2);
    witness.check(addr, b"after unknown opcode");
    Client::connect(addr).publish("same.connection", b"works");
    assert_eq!(client.read_item(sources[0].1).unwrap(), b"works");
}

#[test]
fn ops_before_the_handshake_are_dropped() {
    let (gateway, addr) = start("");
    let mut client = Client::connect_raw(addr, 0x0123_4567_89AB_CDEF);
    client.until("gatewayd's HANDSHAKE", |c| c.server != 0);
    let early = client.dial((client.server, (1 << 24) + 1));
    client.write_frame(early, b"PUB early\nnot published");
    client.idle(Duration::from_millis(200));
    assert!(
        !client.streams[&early].syn,
        "a DIAL before HANDSHAKE is dropped"
    );
    assert!(
        client.service.is_none(),
        "no SERVICE before the peer's HANDSHAKE"
    );
    client.handshake();
    client.until("SERVICE", |c| c.service.is_some());
    let (_, sources) = client.subscribe("late", 1);
    wait_subscriptions(&gateway, 1);
    Client::connect(addr).publish("late", b"ok now");
    assert_eq!(client.read_item(sources[0].1).unwrap(), b"ok now");
}

#[test]
fn oversized_op_length_closes_only_that_connection() {
    let (gateway, addr) = start("");
    let mut witness = Witness::new(&gateway, addr);
    let mut client = Client::connect(addr);
    let mut header = Op::new(DATA, (client.server, 5), (client.host, 5), &[]).encode();
    header[25..29].copy_from_slice(&(65_537u32).to_be_bytes());
    client.send_raw(&header);
    client.wait_closed();
    witness.check(addr, b"after oversized op");
}

#[test]
fn truncated_input_ends_only_what_it_truncates() {
    let (gateway, addr) = start("max_frame_bytes = 1024\n");
    let mut witness = Witness::new(&gateway, addr);
    let mut client = Client::connect(addr);

    // A request frame cut short by the client's FIN2: the master closes without sources.
    let (_, port) = client.service.clone().unwrap();
    let master = client.open((client.server, port));
    client.write(master, &10u64.to_le_bytes());
    client.write(master, b"trunc");
    client.close(master);
    assert_eq!(client.read_frame(master), None);

    // A request whose length prefix is over max_frame_bytes: refused at once, as the Go client reports.
    let big = client.open((client.server, port));
    client.write(big, &(1u64 << 40).to_le_bytes());
    assert_eq!(client.go_first_frame(big), Err("wrong frame size"));

    // An empty request: no sources, the master closes.
    let empty = client.post(b"");
    assert_eq!(client.read_frame(empty), None);
    assert!(!client.closed);
    witness.check(addr, b"after bad requests");

    // An op cut off by the end of the TCP stream.
    let mut raw = TcpStream::connect(addr).unwrap();
    let hello = Op::new(HANDSHAKE, (0, 0), (77, 0), br#"{"RAddr":""}"#).encode();
    std::io::Write::write_all(&mut raw, &hello).unwrap();
    let op = Op::new(DATA, (1, 2), (77, 3), b"0123456789").encode();
    std::io::Write::write_all(&mut raw, &op[..op.len() - 4]).unwrap();
    drop(raw);
    witness.check(addr, b"after truncated op");
}

#[test]
fn shutdown_closes_streams_then_connections() {
    let (gateway, addr) = start("");
    let mut client = Client::connect(addr);
    let (master, sources) = client.subscribe("until.shutdown", 1);
    wait_subscriptions(&gateway, 1);
    let status = gateway.terminate(Duration::from_secs(8));
    assert_eq!(status.code(), Some(0));
    client.wait_closed();
    assert!(
        client.streams[&master].fin && client.streams[&sources[0].1].fin,
        "FIN2 on every stream first"
    );
}

#[test]
fn reload_gives_new_connections_the_new_acl_and_keeps_open_ones() {
    let (gateway, addr) =
        start("[chanserv.auth.anonymous]\nname = \"before\"\npublish = [\"open.>\"]\n");
    let mut open = Client::connect(addr);
    assert_eq!(open.publish("open.a", b"1"), "ok");

    let reload = |address: &str| -> serde_json::Value {
        gateway.rewrite_and_reload(&format!(
            "{}[chanserv]\nenabled = true\naddress = \"{address}\"\n\
             [chanserv.auth.anonymous]\nname = \"after\"\npublish = [\"other.>\"]\n",
            base_config()
        ))
    };
    let report = reload("127.0.0.1:0");
    assert_reload(&report, &["chanserv.tcp"], &[]);
    assert!(report["error"].is_null(), "{report}");

    let mut new = Client::connect(addr);
    assert_eq!(
        new.publish("open.a", b"2"),
        "err not allowed to publish to open.a"
    );
    assert_eq!(new.publish("other.a", b"3"), "ok");
    // The connection opened before the reload is still up, under the identity it started with.
    assert_eq!(open.publish("open.a", b"4"), "ok");
    let connections = gateway.get_json("/api/connections");
    assert_eq!(
        sorted_identities(&connections),
        ["after", "before"],
        "{connections}"
    );

    let report = reload("127.0.0.1:1");
    assert_reload(&report, &["chanserv.tcp"], &["chanserv.address"]);
}

#[test]
fn a_wildcard_only_request_returns_from_lookup_and_post_at_once() {
    let (_gateway, addr) = start("");
    let mut client = Client::connect(addr);
    // Nothing is published on these topics: the Go client would block in LookupAndPost for a first frame.
    let master = client.post(b"quiet.>\nquiet.*.deep");
    let header = client.go_first_frame(master).expect("no error");
    assert_eq!(header.as_deref(), Some(&b"status=subscribed\n"[..]));
    // The rest of the announcement: an address the client dials; its channel is empty and ends at once.
    let addr = String::from_utf8(client.read_frame(master).expect("address")).unwrap();
    let channel = client.open(parse_addr(&addr));
    assert_eq!(client.read_frame(channel), None);
    assert!(!client.finished(master), "the subscription stays live");
    // A mixed request needs no status source: its exact selector is announced at once.
    let mixed = client.post(b"quiet.>\nexact");
    assert_eq!(client.next_source(mixed).unwrap().0, "topic=exact\n");
}

#[test]
fn an_oversized_request_fails_lookup_and_post_with_an_error() {
    let (gateway, addr) = start("max_frame_bytes = 1024\n");
    let mut witness = Witness::new(&gateway, addr);
    let mut client = Client::connect(addr);
    // The Go client writes the whole body (length prefix, then the body) before it reads.
    let master = client.post(&[b'x'; 2000]);
    assert_eq!(client.go_first_frame(master), Err("wrong frame size"));
    client.until("the master closed", |c| c.streams[&master].fin);
    assert!(!client.closed);
    witness.check(addr, b"after an oversized request");
}

#[test]
fn server_timeouts_are_settings() {
    let (_gateway, addr) =
        start("timeouts = { master_read_secs = 1, sourcing_secs = 2, accept_secs = 30 }\n");
    let mut client = Client::connect(addr);
    // master_read: a master that never gets its request closes.
    let (_, port) = client.service.clone().unwrap();
    let silent = client.open((client.server, port));
    client.until("the silent master closed", |c| c.streams[&silent].fin);
    // sourcing: no new source for 2 s closes the master; the open source goes on.
    let (master, sources) = client.subscribe("quiet.one\nquiet.>", 1);
    assert_eq!(sources[0].0, "topic=quiet.one\n");
    client.until("the master closed", |c| c.streams[&master].fin);
    assert_eq!(client.read_frame(master), None);
    assert_eq!(Client::connect(addr).publish("quiet.one", b"after"), "ok");
    assert_eq!(client.read_item(sources[0].1).unwrap(), b"after");
}
