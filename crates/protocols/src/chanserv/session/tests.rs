//! Session tests: a scripted AstraNet client (ops built with gatewayd's own op codec) against a real in-process
//! bus, no sockets.

use std::collections::HashMap;
use std::task::Context;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use core_bus::config::{BusConfig, HistoryPolicy, HistoryRule, QueueLimits, SlowConsumerPolicy};
use core_bus::{ConnectionId, Envelope, Origin, Pattern, Protocol, Topic};

use super::*;
use crate::auth::Allowed;
use crate::chanserv::astranet::{op, Addr, HostId, Op, Opcode, WINDOW};
use crate::chanserv::codec::frame::{decode_item, FrameDecoder, PEER_FRAME_LIMIT};
use crate::chanserv::subscription::HIGH_WATER;
use crate::chanserv::timeouts::TimeoutsConfig;

const GW: HostId = HostId(0x547C_9609_6AF7_F642);
const CL: HostId = HostId(0x1122_3344_5566_7788);

/// The client end of one stream.
#[derive(Default)]
struct ClientStream {
    gw_port: u32,
    rx: BytesMut,
    fin: bool,
}

struct Harness {
    session: Session,
    bus: Bus,
    now: Instant,
    next_port: u32,
    streams: HashMap<u32, ClientStream>,
    /// Send REWIND for what the client reads.
    rewind: bool,
}

fn publisher() -> Origin {
    Origin {
        protocol: Protocol::Internal,
        connection: ConnectionId(0),
    }
}

impl Harness {
    fn new(bus: Bus, config: SessionConfig, identity: Identity) -> Harness {
        let now = Instant::now();
        let origin = Origin {
            protocol: Protocol::Chanserv,
            connection: ConnectionId::next(),
        };
        let session = Session::new(
            LinkConfig::new(GW),
            config,
            bus.clone(),
            origin,
            identity,
            None,
            now,
        );
        let mut h = Harness {
            session,
            bus,
            now,
            next_port: 0x0100_0001,
            streams: HashMap::new(),
            rewind: true,
        };
        let hello = Op::new(
            Opcode::Handshake,
            Addr::default(),
            Addr::new(CL, 0),
            Bytes::from_static(br#"{"RAddr":""}"#),
        )
        .unwrap();
        h.send(&[hello]);
        h
    }

    fn default() -> Harness {
        Harness::with_config(SessionConfig::default())
    }

    /// A harness on a bus of its own, with `config`, for the trusted identity "t".
    fn with_config(config: SessionConfig) -> Harness {
        Harness::new(
            Bus::new(BusConfig::default()),
            config,
            Identity::trusted("t"),
        )
    }

    fn send(&mut self, ops: &[Op]) {
        let mut buf = BytesMut::new();
        for op in ops {
            op.encode(&mut buf);
        }
        self.session.handle_input(&buf, self.now);
        self.pump();
    }

    /// Runs deliveries and reads everything the session transmits into the client streams.
    fn pump(&mut self) {
        let waker = futures::task::noop_waker_ref();
        let mut cx = Context::from_waker(waker);
        loop {
            let delivered = self.session.poll_deliveries(&mut cx, self.now).is_ready();
            let mut replies = Vec::new();
            while let Some(bytes) = self.session.poll_transmit(self.now) {
                let mut buf = BytesMut::from(&bytes[..]);
                while let Some(op) = op::decode(&mut buf).unwrap() {
                    replies.extend(self.on_op(op));
                }
            }
            if !replies.is_empty() {
                let mut buf = BytesMut::new();
                for op in &replies {
                    op.encode(&mut buf);
                }
                self.session.handle_input(&buf, self.now);
            } else if !delivered {
                return;
            }
        }
    }

    /// What the client answers to one op from gatewayd.
    fn on_op(&mut self, op: Op) -> Vec<Op> {
        let port = op.dst.port;
        match op.opcode {
            Opcode::Syn => vec![Op::empty(Opcode::Ack, op.src, op.dst)],
            Opcode::Data => {
                let n = op.payload().len() as u32;
                if let Some(s) = self.streams.get_mut(&port) {
                    s.rx.extend_from_slice(op.payload());
                }
                if self.rewind {
                    vec![Op::with_u32(Opcode::Rewind, op.src, op.dst, n)]
                } else {
                    Vec::new()
                }
            }
            Opcode::Fin2 => {
                if let Some(s) = self.streams.get_mut(&port) {
                    s.fin = true;
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn dial(&mut self, gw_port: u32) -> u32 {
        let port = self.next_port;
        self.next_port += 1;
        self.streams.insert(
            port,
            ClientStream {
                gw_port,
                ..ClientStream::default()
            },
        );
        self.send(&[Op::empty(
            Opcode::Dial,
            Addr::new(GW, gw_port),
            Addr::new(CL, port),
        )]);
        port
    }

    fn write_frame(&mut self, port: u32, body: &[u8]) {
        let gw = Addr::new(GW, self.streams[&port].gw_port);
        let len = (body.len() as u64).to_le_bytes();
        let ops = [
            Op::new(
                Opcode::Data,
                gw,
                Addr::new(CL, port),
                Bytes::copy_from_slice(&len),
            )
            .unwrap(),
            Op::new(
                Opcode::Data,
                gw,
                Addr::new(CL, port),
                Bytes::copy_from_slice(body),
            )
            .unwrap(),
        ];
        self.send(&ops);
    }

    fn close(&mut self, port: u32) {
        let gw = Addr::new(GW, self.streams[&port].gw_port);
        self.send(&[Op::empty(Opcode::Fin2, gw, Addr::new(CL, port))]);
    }

    /// `LookupAndPost`: dial the service and write the request. Returns the master's client port.
    fn post(&mut self, body: &[u8]) -> u32 {
        let master = self.dial(SERVICE_PORT);
        self.write_frame(master, body);
        master
    }

    /// Posts the request `body` and dials the first source it announces. Returns the master's and the frame
    /// channel's client ports.
    fn post_and_dial(&mut self, body: &[u8]) -> (u32, u32) {
        let master = self.post(body);
        let (_, port) = self.source(master).unwrap();
        (master, self.dial(port))
    }

    fn frame(&mut self, port: u32) -> Option<Bytes> {
        let s = self.streams.get_mut(&port).unwrap();
        FrameDecoder::new(PEER_FRAME_LIMIT)
            .decode(&mut s.rx)
            .unwrap()
    }

    /// The next announced source: header and gatewayd port.
    fn source(&mut self, master: u32) -> Option<(String, u32)> {
        let header = self.frame(master)?;
        let addr = self.frame(master).expect("address frame");
        let addr = String::from_utf8(addr.to_vec()).unwrap();
        let (host, port) = addr.split_once(':').unwrap();
        assert_eq!(host, GW.to_string());
        Some((
            String::from_utf8(header.to_vec()).unwrap(),
            port.parse().unwrap(),
        ))
    }

    fn items(&mut self, port: u32) -> Vec<Bytes> {
        std::iter::from_fn(|| self.frame(port))
            .map(|f| decode_item(f, PEER_FRAME_LIMIT).unwrap())
            .collect()
    }

    fn finished(&self, port: u32) -> bool {
        let s = &self.streams[&port];
        s.fin && s.rx.is_empty()
    }

    fn publish(&mut self, topic: &str, payload: &[u8]) {
        self.bus.publish(Envelope::new(
            Topic::from_dotted(topic.as_bytes()),
            Bytes::copy_from_slice(payload),
            publisher(),
        ));
        self.pump();
    }
}

#[test]
fn publish_is_answered_by_an_ack_source_and_reaches_the_bus() {
    let mut h = Harness::default();
    let mut watcher = h.bus.mailbox(publisher());
    watcher
        .subscribe(Pattern::parse("orders.eu").unwrap())
        .unwrap();
    let master = h.post(b"PUB orders.eu\nhello");
    let (header, port) = h.source(master).unwrap();
    assert_eq!(header, "ok");
    assert!(h.finished(master), "the master closes after the answer");
    let channel = h.dial(port);
    assert!(h.finished(channel), "the ack channel is empty");
    let mut got = Vec::new();
    watcher.try_recv_batch(&mut got, 10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].envelope.payload[..], b"hello");
    assert_eq!(got[0].envelope.origin.protocol, Protocol::Chanserv);
}

#[test]
fn exact_selectors_are_announced_at_once_and_stream_in_order() {
    let mut h = Harness::default();
    let master = h.post(b"a.b\nc");
    let (h1, p1) = h.source(master).unwrap();
    let (h2, p2) = h.source(master).unwrap();
    assert_eq!((h1.as_str(), h2.as_str()), ("topic=a.b\n", "topic=c\n"));
    assert_eq!(h.session.subscription_count(), 2);
    h.publish("a.b", b"1");
    let ch1 = h.dial(p1);
    let ch2 = h.dial(p2);
    h.publish("c", b"x");
    h.publish("a.b", b"2");
    h.publish("other", b"-");
    assert_eq!(h.items(ch1), vec![Bytes::from("1"), Bytes::from("2")]);
    assert_eq!(h.items(ch2), vec![Bytes::from("x")]);
    assert!(
        !h.finished(master),
        "a live subscription keeps its master open"
    );
    h.close(master);
    assert!(h.finished(ch1) && h.finished(ch2) && h.finished(master));
    assert_eq!(h.session.subscription_count(), 0);
}

#[test]
fn wildcards_announce_topics_as_they_deliver_once_each() {
    let mut h = Harness::default();
    let master = h.post(b"s.*\ns.#");
    let (header, status) = h.source(master).unwrap();
    assert_eq!(
        header, "status=subscribed\n",
        "wildcards only: answered at once"
    );
    let status = h.dial(status);
    assert!(h.finished(status), "the status source's channel is empty");
    assert_eq!(h.source(master), None);
    h.publish("s.one", b"1");
    let (header, port) = h.source(master).unwrap();
    assert_eq!(header, "topic=s.one\n");
    h.publish("s.one", b"2");
    h.publish("s.two.deep", b"d");
    let (header, deep) = h.source(master).unwrap();
    assert_eq!(header, "topic=s.two.deep\n");
    let one = h.dial(port);
    let deep = h.dial(deep);
    assert_eq!(
        h.items(one),
        vec![Bytes::from("1"), Bytes::from("2")],
        "no duplicate from the second selector"
    );
    assert_eq!(h.items(deep), vec![Bytes::from("d")]);
}

#[test]
fn the_source_cap_is_reported_once_in_a_header() {
    let config = SessionConfig {
        max_sources_per_request: 1,
        ..SessionConfig::default()
    };
    let mut h = Harness::with_config(config);
    let master = h.post(b"t.>");
    assert_eq!(h.source(master).unwrap().0, "status=subscribed\n");
    h.publish("t.a", b"1");
    h.publish("t.b", b"2");
    h.publish("t.c", b"3");
    assert_eq!(h.source(master).unwrap().0, "topic=t.a\n");
    let (header, port) = h.source(master).unwrap();
    assert_eq!(header, "error=too_many_sources\nmax_sources=1\n");
    assert_eq!(h.source(master), None);
    let capped = h.dial(port);
    assert!(h.finished(capped));
}

#[test]
fn the_window_pauses_delivery_and_rewind_resumes_it_without_loss() {
    let mut h = Harness::default();
    let master = h.post(b"big");
    let (_, port) = h.source(master).unwrap();
    let channel = h.dial(port);
    h.rewind = false;
    let item = vec![7u8; 1000];
    for _ in 0..300 {
        h.publish("big", &item);
    }
    let received = h.streams[&channel].rx.len();
    assert_eq!(
        received, WINDOW as usize,
        "exactly one window sent without REWIND"
    );
    // The rest waits: at most one window plus one batch in the source, the remainder in the bus mailbox.
    let topic = Topic::from_dotted(b"big");
    let request = h.session.requests.values_mut().next().unwrap();
    let queued = request.source_mut(&topic).unwrap().outbox.len();
    assert!(
        (HIGH_WATER..HIGH_WATER + BATCH * 1008).contains(&queued),
        "{queued} bytes queued in the source"
    );
    h.rewind = true;
    let gw = Addr::new(GW, port);
    h.send(&[Op::with_u32(
        Opcode::Rewind,
        gw,
        Addr::new(CL, channel),
        WINDOW,
    )]);
    let items = h.items(channel);
    assert_eq!(items.len(), 300);
    assert!(items.iter().all(|i| i[..] == item[..]));
}

#[test]
fn compression_applies_to_frame_channels_only() {
    let config = SessionConfig {
        compression: Compression::Lz4,
        ..SessionConfig::default()
    };
    let mut h = Harness::with_config(config);
    let (_, channel) = h.post_and_dial(b"z");
    h.publish("z", &[b'a'; 64]);
    h.publish("z", b"0123456789abcdefXYZ");
    let raw = h.streams[&channel].rx.clone();
    let len = u64::from_le_bytes(raw[..8].try_into().unwrap());
    assert!(
        len < 64,
        "64 x 'a' is sent compressed (example F), frame length {len}"
    );
    assert_eq!(&raw[8..12], b"lz4!");
    assert_eq!(
        h.items(channel),
        vec![
            Bytes::from(vec![b'a'; 64]),
            Bytes::from("0123456789abcdefXYZ")
        ]
    );
}

#[test]
fn from_offset_replays_history_first() {
    let bus = Bus::new(BusConfig {
        history: vec![HistoryRule {
            topics: Pattern::parse("h.>").unwrap(),
            policy: HistoryPolicy {
                max_messages: 100,
                max_bytes: 1 << 20,
                ttl: Duration::ZERO,
            },
        }],
        ..BusConfig::default()
    });
    let mut h = Harness::new(bus, SessionConfig::default(), Identity::trusted("t"));
    for n in 1..=3 {
        h.publish("h.x", n.to_string().as_bytes());
    }
    let pub_master = h.post(b"PUB h.x\n4");
    assert_eq!(h.source(pub_master).unwrap().0, "ok offset=4");
    let master = h.post(b"h.x;from=2\nh.y;from=latest");
    let (header, port) = h.source(master).unwrap();
    assert_eq!(header, "topic=h.x\n");
    let channel = h.dial(port);
    h.publish("h.x", b"5");
    let items: Vec<Bytes> = h.items(channel);
    assert_eq!(items, ["2", "3", "4", "5"].map(Bytes::from).to_vec());
}

#[test]
fn bad_requests_get_an_err_source_and_empty_ones_none() {
    let identity = Identity {
        name: "ro".into(),
        publish: Allowed::Patterns(vec![]),
        subscribe: Allowed::Patterns(vec![Pattern::parse("ok.>").unwrap()]),
    };
    let mut h = Harness::new(
        Bus::new(BusConfig::default()),
        SessionConfig::default(),
        identity,
    );
    let empty = h.post(b"");
    assert!(h.finished(empty));
    for (body, reason) in [
        (&b"PUB x\npayload"[..], "err not allowed to publish to x"),
        (b"secret.>", "err not allowed to subscribe to \"secret.>\""),
        (b"ok.a;size=1", "err line 1: unknown option \"size=1\""),
    ] {
        let master = h.post(body);
        let (header, _) = h.source(master).unwrap();
        assert_eq!(header, reason);
        assert!(h.finished(master));
    }
    assert_eq!(h.session.subscription_count(), 0);
    let mut trusted = Harness::default();
    let master = trusted.post(b"$inbox.*");
    assert_eq!(
        trusted.source(master).unwrap().0,
        "err cannot subscribe to \"$inbox.*\": internal topics can only be subscribed by exact name"
    );
}

#[test]
fn an_auth_line_names_the_identity_of_its_request() {
    use crate::auth::{AuthConfig, Authenticator, StaticToken};
    let auth = Authenticator::new(AuthConfig {
        required: true,
        tokens: vec![StaticToken {
            login: None,
            token: "good".into(),
            identity: Identity {
                name: "feed".into(),
                publish: Allowed::Patterns(vec![Pattern::parse("ok.>").unwrap()]),
                subscribe: Allowed::Patterns(vec![]),
            },
        }],
        ..AuthConfig::default()
    })
    .unwrap();
    let config = SessionConfig {
        auth: std::sync::Arc::new(auth),
        ..SessionConfig::default()
    };
    let mut h = Harness::new(
        Bus::new(BusConfig::default()),
        config,
        Identity::trusted("anonymous"),
    );
    for (body, answer) in [
        (&b"PUB ok.a\nx"[..], "err credentials required"),
        (b"AUTH bad\nPUB ok.a\nx", "err invalid credentials"),
        (b"AUTH good\nPUB no\nx", "err not allowed to publish to no"),
        (
            b"AUTH good\nok.a",
            "err not allowed to subscribe to \"ok.a\"",
        ),
        (b"AUTH good\r\nPUB ok.a\nx", "ok"),
    ] {
        let master = h.post(body);
        assert_eq!(h.source(master).unwrap().0, answer);
    }
}

#[test]
fn an_oversized_or_truncated_request_closes_only_its_master() {
    let config = SessionConfig {
        frame_limit: 16,
        ..SessionConfig::default()
    };
    let mut h = Harness::with_config(config);
    let (_, channel) = h.post_and_dial(b"keep");
    let big = h.post(&[b'x'; 17]);
    assert_eq!(
        &h.streams[&big].rx[..],
        &[0xff; 8],
        "refused with a length the Go client rejects"
    );
    assert!(h.streams[&big].fin);
    let truncated = h.dial(SERVICE_PORT);
    let gw = Addr::new(GW, SERVICE_PORT);
    h.send(&[Op::new(
        Opcode::Data,
        gw,
        Addr::new(CL, truncated),
        Bytes::from_static(&[5, 0, 0, 0, 0, 0, 0, 0, b'a']),
    )
    .unwrap()]);
    h.close(truncated);
    assert!(h.finished(truncated));
    h.publish("keep", b"still");
    assert_eq!(h.items(channel), vec![Bytes::from("still")]);
}

#[test]
fn a_client_closing_a_frame_channel_ends_that_source_only() {
    let mut h = Harness::default();
    let master = h.post(b"a\nb");
    let (_, pa) = h.source(master).unwrap();
    let (_, pb) = h.source(master).unwrap();
    let a = h.dial(pa);
    let b = h.dial(pb);
    h.close(a);
    assert!(h.finished(a));
    h.publish("a", b"lost");
    h.publish("b", b"kept");
    assert_eq!(h.items(b), vec![Bytes::from("kept")]);
    assert!(!h.finished(master));
}

#[test]
fn undialed_sources_expire_after_the_accept_timeout() {
    let mut h = Harness::default();
    let master = h.post(b"never");
    let (_, port) = h.source(master).unwrap();
    for n in 0..200 {
        h.publish("never", &[n; 1000]);
    }
    h.now += Duration::from_secs(31);
    h.session.handle_timeout(h.now);
    h.pump();
    let late = h.dial(port);
    assert!(
        h.streams[&late].rx.is_empty() && !h.streams[&late].fin,
        "an expired port answers no DIAL"
    );
    assert!(!h.finished(master));
}

#[test]
fn shutdown_closes_every_stream() {
    let mut h = Harness::default();
    let (master, channel) = h.post_and_dial(b"a");
    h.session.shutdown(h.now);
    h.pump();
    assert!(h.finished(master) && h.finished(channel));
}

#[test]
fn a_subscriber_too_slow_for_the_bus_queue_loses_only_that_request() {
    let bus = Bus::new(BusConfig {
        subscriber_queue: QueueLimits {
            max_messages: 10,
            max_bytes: 1 << 20,
        },
        slow_consumer: SlowConsumerPolicy::Disconnect,
        ..BusConfig::default()
    });
    let mut h = Harness::new(bus, SessionConfig::default(), Identity::trusted("t"));
    let (slow, slow_channel) = h.post_and_dial(b"slow");
    let (_, other_channel) = h.post_and_dial(b"other");
    h.rewind = false;
    // 200 KiB: one window reaches the client, one more waits in the source, 10 fit the bus queue, the rest
    // overflows it.
    for _ in 0..200 {
        h.publish("slow", &[1; 1024]);
    }
    assert!(
        h.finished(slow),
        "the bus disconnected the request: its master closes"
    );
    assert!(h.streams[&slow_channel].fin);
    h.publish("other", b"unaffected");
    assert_eq!(h.items(other_channel), vec![Bytes::from("unaffected")]);
    assert_eq!(h.session.subscription_count(), 1);
}

mod random {
    use super::*;
    use proptest::prelude::*;

    /// Request bodies worth trying: valid ones and near misses.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"a\nb.*\nc.#".to_vec()),
            Just(b"PUB a\nx".to_vec()),
            Just(b"a;from=1".to_vec()),
            Just(b"{\"topics\":[\"a\"]}".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
        ]
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// Dial the service, or (by index) one of the ports gatewayd announced, or anything.
        Dial(u8),
        Request(u8, Vec<u8>),
        Raw(u8, Vec<u8>),
        Fin(u8),
        Rewind(u8, u32),
        Publish(u8),
        Wait(u16),
        Garbage(Vec<u8>),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            any::<u8>().prop_map(Step::Dial),
            (any::<u8>(), body()).prop_map(|(s, b)| Step::Request(s, b)),
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..24))
                .prop_map(|(s, b)| Step::Raw(s, b)),
            any::<u8>().prop_map(Step::Fin),
            (any::<u8>(), any::<u32>()).prop_map(|(s, n)| Step::Rewind(s, n)),
            any::<u8>().prop_map(Step::Publish),
            any::<u16>().prop_map(Step::Wait),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Step::Garbage),
        ]
    }

    fn nth_port(h: &Harness, n: u8) -> Option<u32> {
        let mut ports: Vec<u32> = h.streams.keys().copied().collect();
        ports.sort_unstable();
        ports.get(n as usize % ports.len().max(1)).copied()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn random_client_behaviour_never_panics(steps in proptest::collection::vec(step(), 0..40)) {
            let mut h = Harness::default();
            let mut announced: Vec<u32> = Vec::new();
            for step in steps {
                match step {
                    Step::Dial(n) => {
                        let target = match announced.get(n as usize % (announced.len() + 1)) {
                            Some(&port) => port,
                            None => SERVICE_PORT,
                        };
                        h.dial(target);
                    }
                    Step::Request(n, body) => {
                        if let Some(port) = nth_port(&h, n) {
                            h.write_frame(port, &body);
                        }
                    }
                    Step::Raw(n, bytes) => {
                        if let Some(port) = nth_port(&h, n) {
                            let gw = Addr::new(GW, h.streams[&port].gw_port);
                            h.send(&[Op::new(Opcode::Data, gw, Addr::new(CL, port), Bytes::from(bytes)).unwrap()]);
                        }
                    }
                    Step::Fin(n) => {
                        if let Some(port) = nth_port(&h, n) {
                            h.close(port);
                        }
                    }
                    Step::Rewind(n, credit) => {
                        if let Some(port) = nth_port(&h, n) {
                            let gw = Addr::new(GW, h.streams[&port].gw_port);
                            h.send(&[Op::with_u32(Opcode::Rewind, gw, Addr::new(CL, port), credit)]);
                        }
                    }
                    Step::Publish(n) => h.publish(["a", "b.x", "c.y.z"][n as usize % 3], &[n; 100]),
                    Step::Wait(ms) => {
                        h.now += Duration::from_millis(u64::from(ms) * 10);
                        h.session.handle_timeout(h.now);
                        h.pump();
                    }
                    Step::Garbage(bytes) => {
                        h.session.handle_input(&bytes, h.now);
                        h.pump();
                    }
                }
                // Collect the ports of announced sources from every master-looking stream.
                let ports: Vec<u32> = h.streams.keys().copied().collect();
                for port in ports {
                    let mut buf = h.streams[&port].rx.clone();
                    let decoder = FrameDecoder::new(PEER_FRAME_LIMIT);
                    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                        if let Some((_, p)) = std::str::from_utf8(&frame).ok().and_then(|t| t.split_once(':')) {
                            if let Ok(p) = p.parse::<u32>() {
                                if !announced.contains(&p) {
                                    announced.push(p);
                                }
                            }
                        }
                    }
                }
                prop_assert!(h.session.subscription_count() <= 3 * 40);
            }
        }
    }
}

fn with_timeouts(timeouts: TimeoutsConfig) -> Harness {
    let config = SessionConfig {
        timeouts: Timeouts::from(timeouts),
        ..SessionConfig::default()
    };
    Harness::with_config(config)
}

fn advance(h: &mut Harness, secs: u64) {
    h.now += Duration::from_secs(secs);
    h.session.handle_timeout(h.now);
    h.pump();
}

#[test]
fn master_read_and_sourcing_timeouts_close_the_master_only() {
    let mut h = with_timeouts(TimeoutsConfig {
        master_read_secs: 2,
        sourcing_secs: 5,
        ..TimeoutsConfig::default()
    });
    let silent = h.dial(SERVICE_PORT);
    let (master, channel) = h.post_and_dial(b"s.one\ns.>");
    advance(&mut h, 3);
    assert!(h.finished(silent), "no request within master_read");
    assert!(!h.finished(master));
    advance(&mut h, 3);
    assert!(h.finished(master), "no new source within sourcing");
    h.publish("s.one", b"still");
    assert_eq!(h.items(channel), vec![Bytes::from("still")]);
    h.publish("s.two", b"no longer announced");
    assert_eq!(h.source(master), None);
    // Its last source gone, the request ends.
    h.close(channel);
    assert!(h.finished(channel));
    assert_eq!(h.session.subscription_count(), 0);
}

#[test]
fn serving_timeout_ends_the_request_and_frame_write_a_stalled_source() {
    let mut h = with_timeouts(TimeoutsConfig {
        serving_secs: 10,
        frame_write_secs: 2,
        ..TimeoutsConfig::default()
    });
    let master = h.post(b"a\nb");
    let (_, pa) = h.source(master).unwrap();
    let (_, pb) = h.source(master).unwrap();
    let a = h.dial(pa);
    let b = h.dial(pb);
    // `a` stalls: no credit comes back for it.
    h.rewind = false;
    for _ in 0..70 {
        h.publish("a", &[1; 1000]);
    }
    h.rewind = true;
    advance(&mut h, 3);
    assert!(
        h.streams[&a].fin,
        "a source without progress past frame_write ends"
    );
    h.publish("b", b"fine");
    assert_eq!(h.items(b), vec![Bytes::from("fine")]);
    assert!(!h.finished(master));
    advance(&mut h, 8);
    assert!(
        h.finished(master) && h.finished(b),
        "serving ends the whole request"
    );
    assert_eq!(h.session.subscription_count(), 0);
}
