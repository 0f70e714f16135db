//! Replays the client side of `tests/fixtures/wire/chanserv/chanserv-sub-pub.jsonl` (Go astranet + chanserv client against
//! the Go reference server) through gatewayd's AstraNet link and chanserv framing, with a test session that behaves
//! like the reference server (3 sources per request, each streaming one frame that echoes the request body), and
//! checks that what gatewayd sends back has the transcript's structure: HANDSHAKE, SERVICE, then per stream
//! SYN / SYN_ACK / the same chanserv bytes / FIN2, and REWIND credit for every byte the client sent.
//!
//! gatewayd reuses the reference server's host id and, like AstraNet, draws ports from one node-wide counter, so
//! stream addresses (and the source addresses inside the master's frames) come out identical. Differences that are
//! expected: gatewayd sends no FOLLOW and has no `ipc.<id>` debug service; it may coalesce DATA ops and REWINDs.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use protocols::chanserv::astranet::{
    op, Addr, Event, HostId, Link, LinkConfig, Op, Opcode, PortCounter, Recv, ServiceName,
    StreamId, SERVICE_PORT,
};
use protocols::chanserv::channel::{Outbox, RequestReader};
use protocols::chanserv::codec::frame::{Compression, FrameDecoder};
use serde_json::Value;

fn fixture() -> Vec<Value> {
    transcript_lines("chanserv/chanserv-sub-pub.jsonl")
}

/// An op as the transcript's decoded line states it.
fn op_of_line(line: &Value) -> Op {
    let opcode = Opcode::from_code(line["astranet_op"].as_u64().unwrap() as u8).unwrap();
    let host = |k: &str| HostId(u64::from_str_radix(line[k].as_str().unwrap(), 16).unwrap());
    let port = |k: &str| line[k].as_u64().unwrap() as u32;
    Op::new(
        opcode,
        Addr::new(host("remote_host"), port("remote_port")),
        Addr::new(host("local_host"), port("local_port")),
        Bytes::from(unhex(line["data_hex"].as_str().unwrap())),
    )
    .unwrap()
}

struct Conn {
    /// c2s raw chunks with their time.
    chunks: Vec<(f64, Vec<u8>)>,
    c2s_ops: Vec<Op>,
    s2c_ops: Vec<Op>,
}

fn conns(lines: &[Value]) -> BTreeMap<u64, Conn> {
    let mut conns = BTreeMap::new();
    for line in &lines[1..] {
        let conn = conns
            .entry(line["conn"].as_u64().unwrap())
            .or_insert_with(|| Conn {
                chunks: Vec::new(),
                c2s_ops: Vec::new(),
                s2c_ops: Vec::new(),
            });
        let c2s = line["dir"] == "c2s";
        if let Some(hex) = line["hex"].as_str() {
            if c2s {
                conn.chunks
                    .push((line["t_ms"].as_f64().unwrap(), unhex(hex)));
            }
        } else if line.get("astranet_op").is_some() {
            if c2s {
                conn.c2s_ops.push(op_of_line(line));
            } else {
                conn.s2c_ops.push(op_of_line(line));
            }
        }
    }
    conns
}

/// What one stream carried from the server, in order: SYN, SYN_ACK, DATA (consecutive ops merged), FIN2; and
/// the REWIND credit it gave in all.
#[derive(Debug, Default, PartialEq, Eq)]
struct StreamShape {
    ops: Vec<(Opcode, Vec<u8>)>,
    rewound: u64,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Shape {
    /// Link-level ops (HANDSHAKE, SERVICE, …) with their source address and payload.
    link: Vec<(Opcode, Addr, Vec<u8>)>,
    /// Per stream, keyed by (client end, server port).
    streams: BTreeMap<(Addr, u32), StreamShape>,
}

fn shape(ops: &[Op]) -> Shape {
    let mut shape = Shape::default();
    for op in ops {
        match op.opcode {
            Opcode::Handshake | Opcode::Service | Opcode::Follow | Opcode::Ping | Opcode::Pong => {
                shape.link.push((op.opcode, op.src, op.payload().to_vec()))
            }
            _ => {
                let stream = shape.streams.entry((op.dst, op.src.port)).or_default();
                match (op.opcode, stream.ops.last_mut()) {
                    (Opcode::Rewind, _) => stream.rewound += u64::from(op.payload_u32().unwrap()),
                    (Opcode::Data, Some((Opcode::Data, bytes))) => {
                        bytes.extend_from_slice(op.payload())
                    }
                    _ => stream.ops.push((op.opcode, op.payload().to_vec())),
                }
            }
        }
    }
    shape
}

/// A chanserv server like the fixture's reference: every request gets 3 sources with an empty header, and each
/// source streams one frame equal to the request body.
#[derive(Default)]
struct EchoServer {
    masters: HashMap<StreamId, Master>,
    /// Announced, not yet dialed: port → body to stream.
    announced: HashMap<u32, Bytes>,
    channels: HashMap<StreamId, Outbox>,
}

struct Master {
    request: RequestReader,
    out: Outbox,
    answered: bool,
}

impl EchoServer {
    fn drive(&mut self, link: &mut Link, now: Instant) {
        while let Some(event) = link.poll_event() {
            match event {
                Event::Connected { .. } => {}
                Event::Accepted { stream, port } if port == SERVICE_PORT => {
                    let master = Master {
                        request: RequestReader::new(FrameDecoder::default()),
                        out: Outbox::new(),
                        answered: false,
                    };
                    self.masters.insert(stream, master);
                }
                Event::Accepted { stream, port } => {
                    let body = self
                        .announced
                        .remove(&port)
                        .expect("dial to an announced port");
                    let mut out = Outbox::new();
                    out.push_item(&body, Compression::Off).unwrap();
                    self.channels.insert(stream, out);
                    self.flush(link, stream, now);
                }
                Event::Readable { stream } => {
                    while let Recv::Data(data) = link.recv(stream).unwrap() {
                        let Some(master) = self.masters.get_mut(&stream) else {
                            panic!("the client never writes on a frame channel");
                        };
                        if let Some(body) = master.request.push(&data).unwrap() {
                            for _ in 0..3 {
                                let addr = link.bind_once(now + Duration::from_secs(30)).unwrap();
                                self.announced.insert(addr.port, body.clone());
                                master.out.push_source(b"", addr).unwrap();
                            }
                            master.answered = true;
                        }
                    }
                    self.flush(link, stream, now);
                }
                Event::Writable { stream } => self.flush(link, stream, now),
                other => panic!("unexpected event {other:?}"),
            }
        }
    }

    /// Sends what the stream's credit allows, and closes it once everything is out.
    fn flush(&mut self, link: &mut Link, stream: StreamId, now: Instant) {
        let (out, done) = match (
            self.masters.get_mut(&stream),
            self.channels.get_mut(&stream),
        ) {
            (Some(m), _) => (&mut m.out, m.answered),
            (None, Some(out)) => (out, true),
            (None, None) => return,
        };
        out.flush(link, stream).unwrap();
        if done && out.is_empty() {
            link.finish(stream, now).unwrap();
        }
    }
}

fn decode_all(bytes: &[u8]) -> Vec<Op> {
    let mut buf = BytesMut::from(bytes);
    let mut ops = Vec::new();
    while let Some(op) = op::decode_eof(&mut buf).unwrap() {
        ops.push(op);
    }
    ops
}

#[test]
fn client_ops_decode_as_the_transcript_states() {
    for (id, conn) in conns(&fixture()) {
        let bytes: Vec<u8> = conn.chunks.iter().flat_map(|(_, c)| c.clone()).collect();
        assert_eq!(decode_all(&bytes), conn.c2s_ops, "conn {id}");
        assert!(!conn.c2s_ops.is_empty());
    }
}

#[test]
fn replay_gives_the_transcript_structure() {
    let lines = fixture();
    let conns = conns(&lines);
    assert_eq!(conns.len(), 2);
    let server = conns[&1].s2c_ops[0].src.host;
    let mut config = LinkConfig::new(server);
    config.service = ServiceName::new("interop").unwrap();
    config.ports = PortCounter::new();
    let start = Instant::now();

    for (id, conn) in &conns {
        let hello = &conn.s2c_ops[0];
        assert_eq!(hello.opcode, Opcode::Handshake);
        let raddr: Value = serde_json::from_slice(hello.payload()).unwrap();
        let peer = raddr["RAddr"].as_str().unwrap().parse().unwrap();

        let opened = start + Duration::from_secs_f64(conn.chunks[0].0 / 1000.0);
        let mut link = Link::new(config.clone(), Some(peer), opened);
        let mut server = EchoServer::default();
        let mut sent = Vec::new();
        for (t_ms, chunk) in &conn.chunks {
            let now = start + Duration::from_secs_f64(t_ms / 1000.0);
            assert!(
                link.poll_timeout().is_some_and(|t| t > now),
                "no timer may fire during the replay"
            );
            link.handle_input(chunk, now);
            server.drive(&mut link, now);
            while let Some(bytes) = link.poll_transmit(now) {
                sent.extend(decode_all(&bytes));
            }
        }
        assert_eq!(
            sent[0].opcode,
            Opcode::Handshake,
            "conn {id}: HANDSHAKE goes first"
        );
        assert!(
            server.announced.is_empty(),
            "conn {id}: every announced source was dialed"
        );
        let stats = *link.stats();
        assert_eq!(
            stats,
            Default::default(),
            "conn {id}: nothing from the client was dropped"
        );
        link.handle_eof();
        assert!(link.is_closed());

        let mut expected = shape(&conn.s2c_ops);
        // gatewayd never sends FOLLOW and has no `ipc.<id>` debug service.
        expected
            .link
            .retain(|(op, _, payload)| *op != Opcode::Follow && !payload.starts_with(b"ipc."));
        let actual = shape(&sent);
        assert_eq!(actual.link, expected.link, "conn {id}: link-level ops");
        assert_eq!(
            actual.streams.keys().collect::<Vec<_>>(),
            expected.streams.keys().collect::<Vec<_>>(),
            "conn {id}: streams"
        );
        for (key, want) in &expected.streams {
            assert_eq!(&actual.streams[key], want, "conn {id}: stream {key:?}");
        }
        // Sanity: the comparison covered what matters.
        let masters = expected
            .streams
            .keys()
            .filter(|(_, port)| *port == SERVICE_PORT)
            .count();
        assert_eq!(masters, if *id == 1 { 1 } else { 2 });
        assert_eq!(expected.streams.len(), masters * 4);
    }
}
