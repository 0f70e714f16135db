//! Unit tests of the link state machine, driven by ops a Go client would send.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::chanserv::astranet::op;
use crate::chanserv::astranet::stream::WINDOW;

const GW: HostId = HostId(0x547C_9609_6AF7_F642);
const CL: HostId = HostId(0x1122_3344_5566_7788);
const CL_PORT: u32 = 0x0100_0001;

fn config() -> LinkConfig {
    LinkConfig::new(GW)
}

fn peer_addr() -> Option<SocketAddr> {
    Some("10.0.0.7:51234".parse().unwrap())
}

fn bytes_of(ops: &[Op]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for op in ops {
        op.encode(&mut buf);
    }
    buf.to_vec()
}

fn decode_ops(bytes: &[u8]) -> Vec<Op> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(op) = op::decode(&mut buf).unwrap() {
        out.push(op);
    }
    assert!(buf.is_empty());
    out
}

fn transmit(link: &mut Link, now: Instant) -> Vec<Op> {
    let mut out = Vec::new();
    while let Some(bytes) = link.poll_transmit(now) {
        out.extend(decode_ops(&bytes));
    }
    out
}

fn events(link: &mut Link) -> Vec<Event> {
    std::iter::from_fn(|| link.poll_event()).collect()
}

fn client_handshake() -> Op {
    Op::new(
        Opcode::Handshake,
        Addr::default(),
        Addr::new(CL, 0),
        Bytes::from_static(br#"{"RAddr":"10.0.0.1:5555"}"#),
    )
    .unwrap()
}

fn svc() -> Addr {
    Addr::new(GW, SERVICE_PORT)
}

fn cl(port: u32) -> Addr {
    Addr::new(CL, port)
}

fn feed(link: &mut Link, ops: &[Op], now: Instant) {
    link.handle_input(&bytes_of(ops), now);
}

/// A link past the handshake, its output and events drained.
fn connected(now: Instant) -> Link {
    connected_with(config(), peer_addr(), now)
}

/// A link past the handshake at a new `now`, and that `now`.
fn fresh_link() -> (Instant, Link) {
    let now = Instant::now();
    (now, connected(now))
}

/// A link with `cfg` past the handshake, its output and events drained.
fn connected_with(cfg: LinkConfig, peer: Option<SocketAddr>, now: Instant) -> Link {
    let mut link = Link::new(cfg, peer, now);
    feed(&mut link, &[client_handshake()], now);
    transmit(&mut link, now);
    events(&mut link);
    link
}

/// Opens a stream from client port `port` to the service: DIAL, ACK. Returns its id.
fn open(link: &mut Link, port: u32, now: Instant) -> StreamId {
    feed(link, &[dial(port)], now);
    let Some(Event::Accepted { stream, .. }) = link.poll_event() else {
        panic!("no Accepted event");
    };
    feed(link, &[ack(port)], now);
    transmit(link, now);
    events(link);
    stream
}

/// A DIAL from client port `port` to the service.
fn dial(port: u32) -> Op {
    Op::empty(Opcode::Dial, svc(), cl(port))
}

/// An ACK from client port `port` to the service.
fn ack(port: u32) -> Op {
    Op::empty(Opcode::Ack, svc(), cl(port))
}

/// An op of the link itself (PING, PONG): between the zero addresses.
fn link_op(opcode: Opcode) -> Op {
    Op::empty(opcode, Addr::default(), Addr::default())
}

/// An op without payload from the service to client port `port`.
fn to_client(opcode: Opcode, port: u32) -> Op {
    Op::empty(opcode, cl(port), svc())
}

/// Asserts that the link's one event is that it closed for `reason`.
#[track_caller]
fn assert_closed(link: &mut Link, reason: CloseReason) {
    assert_eq!(events(link), vec![Event::Closed(reason)]);
}

/// Asserts that the link has nothing to write and no event.
fn assert_quiet(link: &mut Link, now: Instant) {
    assert!(transmit(link, now).is_empty());
    assert!(events(link).is_empty());
}

fn data(port: u32, payload: &[u8]) -> Op {
    Op::new(
        Opcode::Data,
        svc(),
        cl(port),
        Bytes::copy_from_slice(payload),
    )
    .unwrap()
}

#[test]
fn handshake_is_sent_first_and_matches_example_a() {
    let now = Instant::now();
    let mut link = Link::new(config(), peer_addr(), now);
    let bytes = link.poll_transmit(now).unwrap();
    // docs/protocols/chanserv.md, "Examples", A.
    let expected = Op::new(
        Opcode::Handshake,
        Addr::default(),
        Addr::new(GW, 0),
        Bytes::from_static(br#"{"RAddr":"10.0.0.7:51234"}"#),
    )
    .unwrap();
    assert_eq!(bytes.to_vec(), bytes_of(&[expected]));
    assert_eq!(bytes.len(), 55);
    assert_eq!(link.poll_transmit(now), None);
    assert_eq!(link.peer(), None);
    let unknown = Link::new(config(), None, now).poll_transmit(now).unwrap();
    assert_eq!(
        decode_ops(&unknown)[0].payload(),
        &Bytes::from_static(br#"{"RAddr":""}"#)
    );
}

#[test]
fn service_is_advertised_after_the_peer_handshake() {
    let now = Instant::now();
    let mut link = Link::new(config(), peer_addr(), now);
    transmit(&mut link, now);
    feed(&mut link, &[client_handshake()], now);
    let ops = transmit(&mut link, now);
    let expected = Op::new(
        Opcode::Service,
        Addr::default(),
        svc(),
        Bytes::from_static(b"chanserv"),
    )
    .unwrap();
    assert_eq!(ops, vec![expected]);
    assert_eq!(
        events(&mut link),
        vec![Event::Connected {
            peer: CL,
            raddr: "10.0.0.1:5555".into()
        }]
    );
    assert_eq!(link.peer(), Some(CL));
    // A second HANDSHAKE changes nothing.
    feed(&mut link, &[client_handshake()], now);
    assert!(transmit(&mut link, now).is_empty());
    assert_eq!(link.stats().ignored_ops, 1);
}

#[test]
fn configured_service_name_is_advertised() {
    let now = Instant::now();
    let mut cfg = config();
    cfg.service = ServiceName::new("chanserv.prod.eu").unwrap();
    let mut link = Link::new(cfg, None, now);
    feed(&mut link, &[client_handshake()], now);
    let ops = transmit(&mut link, now);
    assert_eq!(ops[1].opcode, Opcode::Service);
    assert_eq!(&ops[1].payload()[..], b"chanserv.prod.eu");
    assert_eq!(ServiceName::new(""), Err(InvalidServiceName(0)));
    assert_eq!(ServiceName::default().as_str(), "chanserv");
}

#[test]
fn ops_before_the_handshake_are_dropped() {
    let now = Instant::now();
    let mut link = Link::new(config(), peer_addr(), now);
    transmit(&mut link, now);
    let ping = link_op(Opcode::Ping);
    feed(&mut link, &[ping, dial(CL_PORT), data(CL_PORT, b"x")], now);
    assert_quiet(&mut link, now);
    assert_eq!(link.stats().before_handshake, 3);
    // The DIAL was not remembered: after the handshake the same stream can be opened normally.
    feed(&mut link, &[client_handshake()], now);
    transmit(&mut link, now);
    events(&mut link);
    open(&mut link, CL_PORT, now);
}

#[test]
fn handshake_timeout_closes_the_link() {
    let now = Instant::now();
    let mut link = Link::new(config(), peer_addr(), now);
    assert_eq!(link.poll_timeout(), Some(now + Duration::from_secs(10)));
    link.handle_timeout(now + Duration::from_millis(9_999));
    assert!(!link.is_closed());
    link.handle_timeout(now + Duration::from_secs(10));
    assert!(link.is_closed());
    assert_closed(&mut link, CloseReason::HandshakeTimeout);
    assert_eq!(link.poll_transmit(now), None);
    assert_eq!(link.poll_timeout(), None);
}

#[test]
fn malformed_handshake_closes_the_link() {
    let now = Instant::now();
    let mut link = Link::new(config(), peer_addr(), now);
    let bad = Op::new(
        Opcode::Handshake,
        Addr::default(),
        cl(0),
        Bytes::from_static(b"hello"),
    )
    .unwrap();
    feed(&mut link, &[bad], now);
    assert!(link.is_closed());
    assert!(matches!(
        events(&mut link)[..],
        [Event::Closed(CloseReason::BadHandshake(_))]
    ));
}

#[test]
fn dial_syn_ack_syn_ack_opens_a_writable_stream() {
    let (now, mut link) = fresh_link();
    feed(&mut link, &[dial(CL_PORT)], now);
    assert_eq!(
        transmit(&mut link, now),
        vec![to_client(Opcode::Syn, CL_PORT)]
    );
    let [Event::Accepted { stream, port }] = events(&mut link)[..] else {
        panic!("expected Accepted");
    };
    assert_eq!(port, SERVICE_PORT);
    assert_eq!(
        link.send(stream, b"early"),
        Ok(0),
        "not writable before ACK"
    );
    feed(&mut link, &[ack(CL_PORT)], now);
    assert_eq!(
        transmit(&mut link, now),
        vec![to_client(Opcode::SynAck, CL_PORT)]
    );
    assert_eq!(events(&mut link), vec![Event::Writable { stream }]);
    assert_eq!(link.send_capacity(stream), Ok(WINDOW as usize));
    // A repeated ACK does nothing.
    feed(&mut link, &[ack(CL_PORT)], now);
    assert_quiet(&mut link, now);
}

#[test]
fn dial_to_an_unknown_port_is_dropped_silently() {
    let (now, mut link) = fresh_link();
    feed(
        &mut link,
        &[Op::empty(Opcode::Dial, Addr::new(GW, 7), cl(CL_PORT))],
        now,
    );
    assert_quiet(&mut link, now);
    assert_eq!(link.stats().unknown_port_dials, 1);
    // Not addressed to us, or a repeat of a live 4-tuple: also dropped.
    feed(
        &mut link,
        &[Op::empty(
            Opcode::Dial,
            Addr::new(HostId(9), SERVICE_PORT),
            cl(CL_PORT),
        )],
        now,
    );
    open(&mut link, CL_PORT, now);
    feed(&mut link, &[dial(CL_PORT)], now);
    assert_quiet(&mut link, now);
    assert_eq!(link.stats().stray_ops, 2);
}

#[test]
fn request_data_is_delivered_and_credited_as_in_example_d() {
    let (now, mut link) = fresh_link();
    let stream = open(&mut link, CL_PORT, now);
    feed(
        &mut link,
        &[
            data(CL_PORT, &[5, 0, 0, 0, 0, 0, 0, 0]),
            data(CL_PORT, b"hello"),
        ],
        now,
    );
    assert_eq!(events(&mut link), vec![Event::Readable { stream }]);
    assert!(
        transmit(&mut link, now).is_empty(),
        "no credit before the owner reads"
    );
    assert_eq!(
        link.recv(stream),
        Ok(Recv::Data(Bytes::from_static(&[5, 0, 0, 0, 0, 0, 0, 0])))
    );
    assert_eq!(
        link.recv(stream),
        Ok(Recv::Data(Bytes::from_static(b"hello")))
    );
    assert_eq!(link.recv(stream), Ok(Recv::Pending));
    assert_eq!(
        transmit(&mut link, now),
        vec![Op::with_u32(Opcode::Rewind, cl(CL_PORT), svc(), 13)]
    );
    // An empty DATA is ignored.
    feed(&mut link, &[data(CL_PORT, b"")], now);
    assert!(events(&mut link).is_empty());
}

#[test]
fn send_never_exceeds_the_window_and_resumes_on_rewind() {
    let (now, mut link) = fresh_link();
    let stream = open(&mut link, CL_PORT, now);
    let big = vec![7u8; 70_000];
    assert_eq!(link.send(stream, &big), Ok(65_536));
    assert_eq!(link.send(stream, &big), Ok(0));
    let ops = transmit(&mut link, now);
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].opcode, Opcode::Data);
    assert_eq!((ops[0].dst, ops[0].src), (cl(CL_PORT), svc()));
    assert_eq!(ops[0].payload().len(), 65_536);
    feed(
        &mut link,
        &[Op::with_u32(Opcode::Rewind, svc(), cl(CL_PORT), 1000)],
        now,
    );
    assert_eq!(events(&mut link), vec![Event::Writable { stream }]);
    assert_eq!(link.send(stream, &big), Ok(1000));
    // A REWIND without a u32 payload is ignored.
    feed(
        &mut link,
        &[Op::new(Opcode::Rewind, svc(), cl(CL_PORT), Bytes::from_static(&[1])).unwrap()],
        now,
    );
    assert_eq!(link.send_capacity(stream), Ok(0));
    assert!(events(&mut link).is_empty());
}

#[test]
fn finish_sends_fin2_after_data_and_forgets_after_linger() {
    let (now, mut link) = fresh_link();
    let stream = open(&mut link, CL_PORT, now);
    link.send(stream, b"bye").unwrap();
    link.finish(stream, now).unwrap();
    link.finish(stream, now).unwrap();
    let ops = transmit(&mut link, now);
    assert_eq!(
        ops.iter().map(|o| o.opcode).collect::<Vec<_>>(),
        vec![Opcode::Data, Opcode::Fin2]
    );
    assert_eq!(ops[1], to_client(Opcode::Fin2, CL_PORT));
    assert_eq!(link.send(stream, b"more"), Err(StreamError::Finished));
    // The peer's REWIND and FIN2 after our FIN2 are still taken.
    feed(
        &mut link,
        &[
            Op::with_u32(Opcode::Rewind, svc(), cl(CL_PORT), 3),
            Op::empty(Opcode::Fin2, svc(), cl(CL_PORT)),
        ],
        now,
    );
    assert_eq!(link.stats().stray_ops, 0);
    let linger = now + Duration::from_secs(10);
    assert!(link.poll_timeout().unwrap() <= linger);
    link.handle_timeout(linger);
    assert_eq!(link.recv(stream), Err(StreamError::UnknownStream));
    feed(&mut link, &[data(CL_PORT, b"late")], linger);
    assert_eq!(link.stats().stray_ops, 1);
}

#[test]
fn finish_before_the_ack_sends_fin2_after_syn_ack() {
    let (now, mut link) = fresh_link();
    feed(&mut link, &[dial(CL_PORT)], now);
    let [Event::Accepted { stream, .. }] = events(&mut link)[..] else {
        panic!("expected Accepted");
    };
    link.finish(stream, now).unwrap();
    assert_eq!(
        transmit(&mut link, now),
        vec![to_client(Opcode::Syn, CL_PORT)]
    );
    assert_eq!(link.send(stream, b"x"), Err(StreamError::Finished));
    feed(&mut link, &[ack(CL_PORT)], now);
    assert_eq!(
        transmit(&mut link, now),
        vec![
            to_client(Opcode::SynAck, CL_PORT),
            to_client(Opcode::Fin2, CL_PORT)
        ]
    );
    assert!(
        events(&mut link).is_empty(),
        "a finished stream does not turn writable"
    );
}

#[test]
fn peer_fin2_ends_the_stream_after_buffered_data() {
    let (now, mut link) = fresh_link();
    let stream = open(&mut link, CL_PORT, now);
    feed(
        &mut link,
        &[
            data(CL_PORT, b"abc"),
            Op::empty(Opcode::Fin2, svc(), cl(CL_PORT)),
        ],
        now,
    );
    assert_eq!(events(&mut link), vec![Event::Readable { stream }]);
    assert_eq!(
        link.recv(stream),
        Ok(Recv::Data(Bytes::from_static(b"abc")))
    );
    assert_eq!(link.recv(stream), Ok(Recv::Finished));
    // Half-close: we may still write.
    assert_eq!(link.send(stream, b"x"), Ok(1));
}

#[test]
fn window_overrun_aborts_only_that_stream() {
    let (now, mut link) = fresh_link();
    let bad = open(&mut link, CL_PORT, now);
    let good = open(&mut link, CL_PORT + 1, now);
    feed(
        &mut link,
        &[data(CL_PORT, &vec![1; 65_536]), data(CL_PORT + 1, b"fine")],
        now,
    );
    events(&mut link);
    feed(&mut link, &[data(CL_PORT, b"!")], now);
    assert_eq!(events(&mut link), vec![Event::Aborted { stream: bad }]);
    assert_eq!(
        transmit(&mut link, now),
        vec![to_client(Opcode::Fin2, CL_PORT)]
    );
    assert_eq!(link.recv(bad), Err(StreamError::Aborted));
    assert_eq!(link.send(bad, b"x"), Err(StreamError::Aborted));
    assert_eq!(link.stats().aborted_streams, 1);
    assert_eq!(link.recv(good), Ok(Recv::Data(Bytes::from_static(b"fine"))));
    assert_eq!(link.send(good, b"x"), Ok(1));
    assert!(!link.is_closed());
}

#[test]
fn ping_pong_keepalive_and_idle_close() {
    let (now, mut link) = fresh_link();
    feed(&mut link, &[link_op(Opcode::Ping)], now);
    assert_eq!(transmit(&mut link, now), vec![link_op(Opcode::Pong)]);
    let t5 = now + Duration::from_secs(5);
    assert_eq!(link.poll_timeout(), Some(t5));
    link.handle_timeout(t5);
    assert_eq!(transmit(&mut link, t5), vec![link_op(Opcode::Ping)]);
    // Our PINGs do not keep the link alive: only inbound ops do.
    let mut t = t5;
    while t < now + Duration::from_secs(100) {
        t = link.poll_timeout().unwrap();
        link.handle_timeout(t);
        transmit(&mut link, t);
    }
    assert_eq!(t, now + Duration::from_secs(100));
    assert_closed(&mut link, CloseReason::IdleTimeout);
}

#[test]
fn inbound_ops_reset_the_idle_timer() {
    let (now, mut link) = fresh_link();
    let later = now + Duration::from_secs(90);
    feed(&mut link, &[link_op(Opcode::Pong)], later);
    link.handle_timeout(now + Duration::from_secs(100));
    assert!(!link.is_closed());
    link.handle_timeout(later + Duration::from_secs(100));
    assert!(link.is_closed());
}

#[test]
fn an_op_stuck_half_way_closes_the_link() {
    let (now, mut link) = fresh_link();
    let bytes = bytes_of(&[data(CL_PORT, b"abcdef")]);
    link.handle_input(&bytes[..20], now);
    assert_eq!(link.poll_timeout(), Some(now + Duration::from_secs(5)));
    link.handle_input(&bytes[20..30], now + Duration::from_secs(4));
    link.handle_timeout(now + Duration::from_secs(10));
    assert_closed(&mut link, CloseReason::Stalled);
}

#[test]
fn oversized_op_closes_but_unknown_opcode_does_not() {
    let (now, mut link) = fresh_link();
    let mut unknown =
        bytes_of(&[Op::new(Opcode::Data, svc(), cl(1), Bytes::from_static(b"zz")).unwrap()]);
    unknown[0] = 0x55;
    link.handle_input(&unknown, now);
    assert!(!link.is_closed());
    assert_eq!(link.stats().unknown_opcodes, 1);
    let mut oversized = bytes_of(&[Op::empty(Opcode::Data, svc(), cl(1))]);
    oversized[25..29].copy_from_slice(&65_537u32.to_be_bytes());
    link.handle_input(&oversized, now);
    assert_closed(
        &mut link,
        CloseReason::Op(OpError::Oversized { len: 65_537 }),
    );
    // Nothing comes out of a closed link, whatever goes in.
    link.handle_input(&bytes_of(&[link_op(Opcode::Ping)]), now);
    assert_eq!(link.poll_transmit(now), None);
    assert_eq!(link.poll_event(), None);
}

#[test]
fn eof_inside_an_op_is_truncation() {
    let (now, mut link) = fresh_link();
    link.handle_input(&bytes_of(&[data(CL_PORT, b"abc")])[..31], now);
    link.handle_eof();
    assert_closed(
        &mut link,
        CloseReason::Op(OpError::Truncated { have: 31, need: 32 }),
    );
    let mut link = connected(now);
    link.handle_eof();
    assert_closed(&mut link, CloseReason::PeerClosed);
}

#[test]
fn bind_once_accepts_one_dial_and_expires() {
    let (now, mut link) = fresh_link();
    let deadline = now + Duration::from_secs(30);
    let a = link.bind_once(deadline).unwrap();
    let b = link.bind_once(deadline).unwrap();
    assert_eq!(
        (a.host, a.port, b.port),
        (GW, SERVICE_PORT + 1, SERVICE_PORT + 2)
    );
    assert_eq!(a.to_string(), "VHyWCWr39kI:16777218");
    feed(&mut link, &[Op::empty(Opcode::Dial, a, cl(40))], now);
    assert_eq!(
        transmit(&mut link, now),
        vec![Op::empty(Opcode::Syn, cl(40), a)]
    );
    assert!(matches!(events(&mut link)[..], [Event::Accepted { port, .. }] if port == a.port));
    // Exactly one accept.
    feed(&mut link, &[Op::empty(Opcode::Dial, a, cl(41))], now);
    assert!(transmit(&mut link, now).is_empty());
    assert_eq!(link.stats().unknown_port_dials, 1);
    assert_eq!(link.poll_timeout(), Some(now + Duration::from_secs(5)));
    link.handle_timeout(deadline);
    assert!(events(&mut link).contains(&Event::BindExpired { port: b.port }));
    feed(&mut link, &[Op::empty(Opcode::Dial, b, cl(42))], deadline);
    assert_eq!(link.stats().unknown_port_dials, 2);
    // Unbinding: the service port stays.
    let c = link.bind_once(deadline + Duration::from_secs(30)).unwrap();
    assert!(link.unbind(c.port));
    assert!(!link.unbind(c.port));
    assert!(!link.unbind(SERVICE_PORT));
}

#[test]
fn dials_beyond_max_streams_are_dropped() {
    let now = Instant::now();
    let mut cfg = config();
    cfg.max_streams = 2;
    let mut link = connected_with(cfg, None, now);
    for port in 1..=3 {
        feed(&mut link, &[dial(port)], now);
    }
    assert_eq!(transmit(&mut link, now).len(), 2);
    assert_eq!(link.stats().refused_dials, 1);
}

#[test]
fn huge_timeouts_do_not_overflow() {
    let now = Instant::now();
    let mut cfg = config();
    cfg.handshake_timeout = Duration::MAX;
    cfg.idle_timeout = Duration::MAX;
    cfg.keepalive = Duration::MAX;
    cfg.linger = Duration::MAX;
    let mut link = Link::new(cfg, None, now);
    assert_eq!(link.poll_timeout(), None);
    feed(&mut link, &[client_handshake()], now);
    events(&mut link);
    let stream = open(&mut link, 1, now);
    link.finish(stream, now).unwrap();
    link.handle_timeout(now + Duration::from_secs(1_000_000));
    assert!(!link.is_closed());
}

/// What a client script produces: the ops sent back and the events, in order.
fn run_script(chunks: &[&[u8]], now: Instant) -> (Vec<Op>, Vec<Event>) {
    let mut link = Link::new(config(), peer_addr(), now);
    let mut out = Vec::new();
    let mut evs = Vec::new();
    for chunk in chunks {
        link.handle_input(chunk, now);
        out.extend(transmit(&mut link, now));
        evs.extend(events(&mut link));
    }
    (out, evs)
}

fn client_script() -> Vec<u8> {
    bytes_of(&[
        client_handshake(),
        dial(CL_PORT),
        ack(CL_PORT),
        data(CL_PORT, &[5, 0, 0, 0, 0, 0, 0, 0]),
        data(CL_PORT, b"hello"),
        link_op(Opcode::Ping),
        Op::with_u32(Opcode::Rewind, svc(), cl(CL_PORT), 4),
        Op::empty(Opcode::Fin2, svc(), cl(CL_PORT)),
    ])
}

#[test]
fn split_at_every_byte_boundary_gives_the_same_result() {
    let now = Instant::now();
    let script = client_script();
    let whole = run_script(&[&script], now);
    assert_eq!(whole.0.len(), 5, "HANDSHAKE, SERVICE, SYN, SYN_ACK, PONG");
    for cut in 0..=script.len() {
        let (a, b) = script.split_at(cut);
        let split = run_script(&[a, b], now);
        assert_eq!(split.0, whole.0, "cut at {cut}");
        // Events may come in different calls but must be the same sequence.
        assert_eq!(split.1, whole.1, "cut at {cut}");
    }
}

/// One step of a random interaction: a well-framed client op (any opcode, any payload) or an action of the owner.
/// Bytes that break the framing are the next test's business: they end the link at once.
#[derive(Debug, Clone)]
enum Step {
    Client(Op),
    /// DIAL + ACK from this client port to our `port`.
    Open(u32, u32),
    Send(usize, usize),
    Recv(usize),
    Finish(usize),
    Bind,
    Wait(u64),
}

fn any_step() -> impl Strategy<Value = Step> {
    let port = 1u32..4;
    let our_port = prop_oneof![
        Just(SERVICE_PORT),
        Just(SERVICE_PORT + 1),
        Just(SERVICE_PORT + 2)
    ];
    let stream_ops = vec![
        Opcode::Dial,
        Opcode::Ack,
        Opcode::Data,
        Opcode::Fin2,
        Opcode::Ping,
    ];
    let opcode = prop_oneof![
        3 => proptest::sample::select(stream_ops),
        1 => proptest::sample::select(Opcode::ALL.to_vec()),
    ];
    let client_op = (
        opcode,
        our_port,
        port,
        proptest::collection::vec(any::<u8>(), 0..70),
    )
        .prop_map(|(opcode, ours, theirs, payload)| {
            Op::new(
                opcode,
                Addr::new(GW, ours),
                cl(theirs),
                Bytes::from(payload),
            )
            .unwrap()
        });
    let rewind = (1u32..4, 0u32..70_000)
        .prop_map(|(theirs, n)| Op::with_u32(Opcode::Rewind, svc(), cl(theirs), n));
    let open = (
        1u32..4,
        prop_oneof![3 => Just(SERVICE_PORT), 1 => Just(SERVICE_PORT + 1)],
    )
        .prop_map(|(theirs, ours)| Step::Open(theirs, ours));
    prop_oneof![
        2 => open,
        3 => client_op.prop_map(Step::Client),
        1 => rewind.prop_map(Step::Client),
        2 => (0usize..4, 0usize..70_000).prop_map(|(s, n)| Step::Send(s, n)),
        1 => (0usize..4).prop_map(Step::Recv),
        1 => (0usize..4).prop_map(Step::Finish),
        1 => Just(Step::Bind),
        1 => (0u64..20_000).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random interactions never panic, and gatewayd never has more than one window of unacknowledged DATA in
    /// flight on a stream.
    #[test]
    fn random_interaction_keeps_invariants(steps in proptest::collection::vec(any_step(), 0..60)) {
        let start = Instant::now();
        let mut now = start;
        let mut link = Link::new(config(), peer_addr(), now);
        link.handle_input(&bytes_of(&[client_handshake()]), now);
        let mut streams = Vec::new();
        let mut in_flight: std::collections::HashMap<(Addr, Addr), i64> = Default::default();
        for step in steps {
            match step {
                Step::Client(op) => {
                    if op.opcode == Opcode::Rewind {
                        if let Some(n) = op.payload_u32() {
                            let f = in_flight.entry((op.src, op.dst)).or_default();
                            *f = (*f - i64::from(n)).max(0);
                        }
                    }
                    link.handle_input(&bytes_of(&[op]), now);
                }
                Step::Open(theirs, ours) => {
                    let (dst, src) = (Addr::new(GW, ours), cl(theirs));
                    feed(&mut link, &[Op::empty(Opcode::Dial, dst, src), Op::empty(Opcode::Ack, dst, src)], now);
                }
                Step::Send(i, n) => {
                    if let Some(&s) = streams.get(i) {
                        let _ = link.send(s, &vec![0; n]);
                    }
                }
                Step::Recv(i) => {
                    if let Some(&s) = streams.get(i) {
                        let _ = link.recv(s);
                    }
                }
                Step::Finish(i) => {
                    if let Some(&s) = streams.get(i) {
                        let _ = link.finish(s, now);
                    }
                }
                Step::Bind => {
                    let _ = link.bind_once(now + Duration::from_secs(30));
                }
                Step::Wait(ms) => {
                    now += Duration::from_millis(ms);
                    link.handle_timeout(now);
                }
            }
            while let Some(event) = link.poll_event() {
                if let Event::Accepted { stream, .. } = event {
                    streams.push(stream);
                }
            }
            while let Some(bytes) = link.poll_transmit(now) {
                for op in decode_ops(&bytes) {
                    prop_assert!(op.payload().len() <= op::MAX_PAYLOAD as usize);
                    if op.opcode == Opcode::Syn {
                        // A new stream on this 4-tuple (an old one may have been forgotten).
                        in_flight.insert((op.dst, op.src), 0);
                    }
                    if op.opcode == Opcode::Data {
                        prop_assert!(!op.payload().is_empty());
                        let f = in_flight.entry((op.dst, op.src)).or_default();
                        *f += op.payload().len() as i64;
                        prop_assert!(*f <= i64::from(WINDOW), "window exceeded: {}", f);
                    }
                }
            }
        }
    }

    /// Arbitrary bytes after a valid handshake never panic, and a mutated client script neither.
    #[test]
    fn random_and_mutated_input_never_panics(
        garbage in proptest::collection::vec(any::<u8>(), 0..500),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let now = Instant::now();
        let mut link = connected(now);
        link.handle_input(&garbage, now);
        transmit(&mut link, now);
        events(&mut link);
        link.handle_eof();

        let mut script = client_script();
        for (at, value) in flips {
            let i = at.index(script.len());
            script[i] = value;
        }
        let mut link = Link::new(config(), peer_addr(), now);
        link.handle_input(&script, now);
        while let Some(Event::Accepted { stream, .. }) = link.poll_event() {
            let _ = link.recv(stream);
            let _ = link.send(stream, b"x");
        }
        transmit(&mut link, now);
        link.handle_timeout(now + Duration::from_secs(200));
    }
}

#[test]
fn closed_streams_make_room_for_new_dials_and_live_ones_do_not() {
    let now = Instant::now();
    let mut cfg = config();
    cfg.max_streams = 2;
    let mut link = connected_with(cfg, None, now);
    // A request done: finished by gatewayd, its FIN2 sent; it lingers for `linger`.
    let done = open(&mut link, 1, now);
    link.finish(done, now).unwrap();
    transmit(&mut link, now);
    open(&mut link, 2, now);
    // The table is full, but one of its streams only lingers: the DIAL is taken.
    open(&mut link, 3, now);
    assert_eq!(link.stats().refused_dials, 0);
    // Two live streams: the next DIAL is refused.
    feed(&mut link, &[dial(4)], now);
    assert!(transmit(&mut link, now).is_empty());
    assert_eq!(link.stats().refused_dials, 1);
}

/// A client link (host `CL`) whose server address is `10.0.0.1:5555`, as in [`client_handshake`].
fn client_link(now: Instant) -> Link {
    Link::client(
        LinkConfig::new(CL),
        Some("10.0.0.1:5555".parse().unwrap()),
        now,
    )
}

/// Hands each link's output to the other until both are quiet.
fn pump(a: &mut Link, b: &mut Link, now: Instant) {
    loop {
        let mut quiet = true;
        while let Some(bytes) = a.poll_transmit(now) {
            b.handle_input(&bytes, now);
            quiet = false;
        }
        while let Some(bytes) = b.poll_transmit(now) {
            a.handle_input(&bytes, now);
            quiet = false;
        }
        if quiet {
            return;
        }
    }
}

/// A client and a server link past the handshake, events drained.
fn client_and_server(now: Instant) -> (Link, Link) {
    let (mut client, mut server) = (client_link(now), Link::new(config(), peer_addr(), now));
    pump(&mut client, &mut server, now);
    events(&mut client);
    events(&mut server);
    (client, server)
}

/// Sends `data` on `from`'s stream as credit allows, passing ops and REWINDs between the links; returns what
/// `to`'s stream read.
fn transfer(
    from: (&mut Link, StreamId),
    to: (&mut Link, StreamId),
    data: &[u8],
    now: Instant,
) -> Vec<u8> {
    let ((tx, tx_id), (rx, rx_id)) = (from, to);
    let (mut sent, mut got) = (0, Vec::new());
    while got.len() < data.len() {
        sent += tx.send(tx_id, &data[sent..]).unwrap();
        assert_eq!(
            tx.send(tx_id, &data[sent..]),
            Ok(0),
            "one send takes all the credit"
        );
        for op in transmit(tx, now) {
            assert!(op.payload().len() <= op::MAX_PAYLOAD as usize);
            rx.handle_input(&bytes_of(&[op]), now);
        }
        while let Ok(Recv::Data(chunk)) = rx.recv(rx_id) {
            got.extend_from_slice(&chunk);
        }
        pump(tx, rx, now);
    }
    got
}

#[test]
fn a_client_link_shakes_hands_and_learns_the_service() {
    let now = Instant::now();
    let mut client = client_link(now);
    assert_eq!(transmit(&mut client, now), vec![client_handshake()]);
    let mut server = Link::new(config(), peer_addr(), now);
    let from_server = transmit(&mut server, now);
    feed(&mut client, &from_server, now);
    assert_eq!(
        events(&mut client),
        vec![Event::Connected {
            peer: GW,
            raddr: "10.0.0.7:51234".into()
        }]
    );
    feed(&mut server, &[client_handshake()], now);
    feed(&mut client, &transmit(&mut server, now), now);
    assert_eq!(events(&mut client), vec![Event::Service { addr: svc() }]);
    assert!(
        transmit(&mut client, now).is_empty(),
        "a client advertises nothing"
    );
    assert_eq!(client.peer(), Some(GW));
    assert_eq!(*client.stats(), LinkStats::default());
}

#[test]
fn a_dialed_stream_carries_more_than_a_window_both_ways_and_closes_with_fin2() {
    let now = Instant::now();
    let (mut client, mut server) = client_and_server(now);
    let stream = client.dial(svc()).unwrap();
    let port = SERVICE_PORT + 1;
    assert_eq!(transmit(&mut client, now), vec![dial(port)]);
    assert_eq!(
        client.send(stream, b"early"),
        Ok(0),
        "not writable before SYN"
    );
    feed(&mut server, &[dial(port)], now);
    feed(&mut client, &transmit(&mut server, now), now);
    assert_eq!(transmit(&mut client, now), vec![ack(port)]);
    assert_eq!(events(&mut client), vec![Event::Writable { stream }]);
    feed(&mut server, &[ack(port)], now);
    let [Event::Accepted {
        stream: accepted, ..
    }, Event::Writable { .. }] = events(&mut server)[..]
    else {
        panic!("the server accepts");
    };
    feed(&mut client, &transmit(&mut server, now), now);
    assert!(events(&mut client).is_empty(), "SYN_ACK changes nothing");

    let up: Vec<u8> = (0..150_000u32).map(|i| i as u8).collect();
    let down: Vec<u8> = up.iter().rev().copied().collect();
    assert_eq!(
        transfer((&mut client, stream), (&mut server, accepted), &up, now),
        up
    );
    assert_eq!(
        transfer((&mut server, accepted), (&mut client, stream), &down, now),
        down
    );

    client.finish(stream, now).unwrap();
    server.finish(accepted, now).unwrap();
    pump(&mut client, &mut server, now);
    assert_eq!(server.recv(accepted), Ok(Recv::Finished));
    assert_eq!(client.recv(stream), Ok(Recv::Finished));
    assert_eq!(*client.stats(), LinkStats::default());
    assert_eq!(*server.stats(), LinkStats::default());
}

#[test]
fn a_client_link_answers_ping_and_sends_its_own() {
    let now = Instant::now();
    let (mut client, _) = client_and_server(now);
    feed(&mut client, &[link_op(Opcode::Ping)], now);
    assert_eq!(transmit(&mut client, now), vec![link_op(Opcode::Pong)]);
    let t5 = now + Duration::from_secs(5);
    client.handle_timeout(t5);
    assert_eq!(transmit(&mut client, t5), vec![link_op(Opcode::Ping)]);
}

#[test]
fn a_stream_finished_before_the_syn_sends_fin2_after_the_ack() {
    let now = Instant::now();
    let (mut client, mut server) = client_and_server(now);
    let stream = client.dial(svc()).unwrap();
    client.finish(stream, now).unwrap();
    let port = SERVICE_PORT + 1;
    assert_eq!(transmit(&mut client, now), vec![dial(port)]);
    feed(&mut server, &[dial(port)], now);
    feed(&mut client, &transmit(&mut server, now), now);
    assert_eq!(
        transmit(&mut client, now),
        vec![ack(port), Op::empty(Opcode::Fin2, svc(), cl(port))]
    );
    assert!(
        events(&mut client).is_empty(),
        "a finished stream does not turn writable"
    );
}

#[test]
fn only_a_client_dials_and_a_client_accepts_no_dial() {
    let now = Instant::now();
    let mut server = connected(now);
    assert_eq!(server.dial(cl(1)), Err(DialError::NotClient));
    let (mut client, _) = client_and_server(now);
    feed(
        &mut client,
        &[Op::empty(Opcode::Dial, cl(SERVICE_PORT), svc())],
        now,
    );
    assert_quiet(&mut client, now);
    assert_eq!(client.stats().unknown_port_dials, 1);
    client.handle_eof();
    assert_eq!(client.dial(svc()), Err(DialError::LinkClosed));
}
