//! Session unit tests: frames in, frames and bus effects out.

use super::*;
use crate::auth::{Allowed, AuthConfig, StaticToken};
use core_bus::config::BusConfig;
use core_bus::{ConnectionId, Protocol};

fn settings(change: impl FnOnce(&mut Settings)) -> Arc<Settings> {
    let mut settings = Settings {
        limits: Limits::DEFAULT,
        transactions: TxLimits::default(),
        heart_beat: HeartBeatPolicy::default(),
        unknown_destination: UnknownDestination::Error,
        default_prefetch: 100,
        max_subscriptions: 8,
        auth: Authenticator::open(),
        ignore_credentials: true,
        server: "gatewayd/test".into(),
        max_durable_subscriptions: 4,
    };
    change(&mut settings);
    Arc::new(settings)
}

/// A bus and settings as they are by default.
fn defaults() -> (Bus, Arc<Settings>) {
    (Bus::new(BusConfig::default()), settings(|_| {}))
}

fn session(bus: &Bus, settings: &Arc<Settings>) -> Session {
    let origin = Origin {
        protocol: Protocol::Stomp,
        connection: ConnectionId::next(),
    };
    Session::new(settings.clone(), bus.clone(), origin)
}

fn feed(session: &mut Session, bytes: &[u8]) -> Flow {
    session.handle_input(&mut BytesMut::from(bytes), core_bus::now_ms())
}

fn connected(bus: &Bus, settings: &Arc<Settings>, version: &str) -> Session {
    let mut s = session(bus, settings);
    let connect = format!("CONNECT\naccept-version:{version}\nhost:h\n\n\0");
    assert_eq!(feed(&mut s, connect.as_bytes()), Flow::Continue);
    let out = output(&mut s);
    assert_eq!(out[0].command, Command::Connected);
    s
}

/// The frames the session queued, decoded back from the wire; the outbox is emptied.
fn output(session: &mut Session) -> Vec<Frame> {
    let mut decoder = Decoder::new(Limits::DEFAULT);
    decoder.set_version(session.wire);
    let mut wire = BytesMut::from(session.outbox.as_bytes());
    session.outbox.clear();
    let mut frames = Vec::new();
    while let Some(decoded) = decoder
        .decode(&mut wire)
        .expect("the session writes valid frames")
    {
        if let Decoded::Frame(frame) = decoded {
            frames.push(frame);
        }
    }
    frames
}

/// Moves every ready delivery of the session's mailbox into MESSAGE frames.
fn pump(session: &mut Session) -> Vec<Frame> {
    let mut deliveries = Vec::new();
    if let Some(mailbox) = session.mailbox_mut() {
        mailbox.try_recv_batch(&mut deliveries, 1000).unwrap();
    }
    session.handle_deliveries(deliveries);
    output(session)
}

fn value<'a>(frame: &'a Frame, name: &str) -> Option<&'a str> {
    frame.header(name).and_then(|v| std::str::from_utf8(v).ok())
}

fn error_message(frames: &[Frame]) -> Option<&str> {
    frames
        .iter()
        .find(|f| f.command == Command::Error)
        .and_then(|f| value(f, "message"))
}

#[test]
fn pipelined_connect_subscribe_send_is_processed_in_order() {
    let bus = Bus::new(BusConfig::default());
    let mut s = session(&bus, &settings(|_| {}));
    let input = b"CONNECT\naccept-version:1.1,1.2\nhost:h\n\n\0\
                  SUBSCRIBE\nid:1\ndestination:/topic/a.*\nreceipt:r\n\n\0\
                  SEND\ndestination:/topic/a.b\n\nhi\0";
    assert_eq!(feed(&mut s, input), Flow::Continue);
    let out = output(&mut s);
    assert_eq!(out.len(), 2);
    assert_eq!(value(&out[0], "version"), Some("1.2"));
    assert_eq!(out[1], Frame::receipt(Bytes::from_static(b"r")));
    let messages = pump(&mut s);
    assert_eq!(messages.len(), 1);
    assert_eq!(value(&messages[0], "destination"), Some("/topic/a.b"));
    assert_eq!(value(&messages[0], "subscription"), Some("1"));
    assert_eq!(&messages[0].body[..], b"hi");
}

#[test]
fn client_ack_is_cumulative_and_nack_redelivers() {
    let (bus, settings) = defaults();
    let mut consumer = connected(&bus, &settings, "1.2");
    feed(
        &mut consumer,
        b"SUBSCRIBE\nid:q\ndestination:/queue/jobs\nack:client\n\n\0",
    );
    let mut producer = connected(&bus, &settings, "1.2");
    for body in ["a", "b", "c"] {
        let send = format!("SEND\ndestination:/queue/jobs\n\n{body}\0");
        feed(&mut producer, send.as_bytes());
    }
    let messages = pump(&mut consumer);
    assert_eq!(messages.len(), 3);
    let ack_of = |i: usize| value(&messages[i], "ack").unwrap().to_owned();
    feed(
        &mut consumer,
        format!("NACK\nid:{}\n\n\0", ack_of(2)).as_bytes(),
    );
    let again = pump(&mut consumer);
    assert_eq!(
        again.len(),
        3,
        "NACK in client mode covers every earlier message"
    );
    assert!(again
        .iter()
        .all(|m| value(m, "redelivered") == Some("true")));
    let last = value(&again[2], "ack").unwrap().to_owned();
    feed(&mut consumer, format!("ACK\nid:{last}\n\n\0").as_bytes());
    let topic = Topic::from_dotted(b"jobs");
    let stats = bus.topics();
    let group = stats.iter().find(|t| t.topic == topic.as_str()).unwrap();
    assert_eq!(group.group.as_ref().unwrap().unacked, 0);
    feed(&mut consumer, format!("ACK\nid:{last}\n\n\0").as_bytes());
    assert!(consumer.is_connected(), "an already settled id is ignored");
}

#[test]
fn transactions_hold_sends_until_commit() {
    let (bus, settings) = defaults();
    let mut s = connected(&bus, &settings, "1.2");
    feed(&mut s, b"SUBSCRIBE\nid:1\ndestination:/topic/t\n\n\0");
    feed(
        &mut s,
        b"BEGIN\ntransaction:x\n\n\0SEND\ndestination:/topic/t\ntransaction:x\nreceipt:held\n\nm\0",
    );
    let out = pump(&mut s);
    assert_eq!(out, vec![Frame::receipt(Bytes::from_static(b"held"))]);
    feed(&mut s, b"COMMIT\ntransaction:x\n\n\0");
    assert_eq!(pump(&mut s).len(), 1);
    feed(
        &mut s,
        b"BEGIN\ntransaction:y\n\n\0SEND\ndestination:/topic/t\ntransaction:y\n\nm\0ABORT\ntransaction:y\n\n\0",
    );
    assert!(pump(&mut s).is_empty());
    assert_eq!(feed(&mut s, b"COMMIT\ntransaction:y\n\n\0"), Flow::Close);
    assert_eq!(error_message(&output(&mut s)), Some("Bad transaction"));
}

#[test]
fn temp_queue_reply_to_is_rewritten_and_answerable() {
    let (bus, settings) = defaults();
    let mut responder = connected(&bus, &settings, "1.2");
    feed(
        &mut responder,
        b"SUBSCRIBE\nid:s\ndestination:/queue/rpc\n\n\0",
    );
    let mut requester = connected(&bus, &settings, "1.0");
    feed(
        &mut requester,
        b"SEND\ndestination:/queue/rpc\nreply-to:/temp-queue/r\ncorrelation-id:7\n\nq\0",
    );
    assert_eq!(requester.subscription_count(), 1);
    let request = pump(&mut responder).remove(0);
    let reply_to = value(&request, "reply-to").unwrap().to_owned();
    assert!(reply_to.starts_with("/reply-queue/"), "{reply_to}");
    let reply = format!("SEND\ndestination:{reply_to}\ncorrelation-id:7\n\nanswer\0");
    feed(&mut responder, reply.as_bytes());
    let answer = pump(&mut requester).remove(0);
    assert_eq!(value(&answer, "subscription"), Some("/temp-queue/r"));
    assert_eq!(value(&answer, "destination"), Some("/temp-queue/r"));
    assert_eq!(value(&answer, "correlation-id"), Some("7"));
    assert_eq!(&answer.body[..], b"answer");
}

#[test]
fn one_zero_subscribe_without_id_and_unsubscribe_by_destination() {
    let (bus, settings) = defaults();
    let mut s = connected(&bus, &settings, "1.0");
    feed(&mut s, b"SUBSCRIBE\ndestination:/topic/x\n\n\0");
    feed(&mut s, b"SEND\ndestination:/topic/x\n\n1\0");
    let first = pump(&mut s);
    assert_eq!(value(&first[0], "subscription"), Some("/topic/x"));
    feed(&mut s, b"UNSUBSCRIBE\ndestination:/topic/x\n\n\0");
    feed(&mut s, b"SEND\ndestination:/topic/x\n\n2\0");
    assert!(pump(&mut s).is_empty());
    assert_eq!(s.subscription_count(), 0);
}

#[test]
fn subscription_cap_and_acl_refusals() {
    let bus = Bus::new(BusConfig::default());
    let capped = settings(|s| s.max_subscriptions = 1);
    let mut s = connected(&bus, &capped, "1.2");
    feed(&mut s, b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0");
    let flow = feed(
        &mut s,
        b"SUBSCRIBE\nid:2\ndestination:/topic/b\nreceipt:r9\n\n\0",
    );
    assert_eq!(flow, Flow::Close);
    let out = output(&mut s);
    assert_eq!(error_message(&out), Some("Too many subscriptions"));
    assert_eq!(value(&out[0], "receipt-id"), Some("r9"));

    let auth = Authenticator::new(AuthConfig {
        tokens: vec![StaticToken {
            login: Some("bob".into()),
            token: "pw".into(),
            identity: Identity {
                name: "bob".into(),
                publish: Allowed::Everything,
                subscribe: Allowed::Patterns(vec![Pattern::parse("public.#").unwrap()]),
            },
        }],
        ..AuthConfig::default()
    })
    .unwrap();
    let strict = settings(|s| {
        s.auth = Arc::new(auth);
        s.ignore_credentials = false;
    });
    let mut refused = session(&bus, &strict);
    feed(&mut refused, b"CONNECT\nlogin:bob\npasscode:nope\n\n\0");
    assert_eq!(error_message(&output(&mut refused)), Some("Bad CONNECT"));
    let mut bob = session(&bus, &strict);
    feed(&mut bob, b"CONNECT\nlogin:bob\npasscode:pw\n\n\0");
    assert_eq!(bob.identity().map(|i| i.name.as_str()), Some("bob"));
    output(&mut bob);
    assert_eq!(
        feed(
            &mut bob,
            b"SUBSCRIBE\nid:1\ndestination:/topic/public.#\n\n\0"
        ),
        Flow::Continue
    );
    assert_eq!(
        feed(&mut bob, b"SUBSCRIBE\nid:2\ndestination:/topic/#\n\n\0"),
        Flow::Close
    );
    assert_eq!(error_message(&output(&mut bob)), Some("Access refused"));
}

#[test]
fn unknown_destinations_follow_the_policy() {
    let bus = Bus::new(BusConfig::default());
    let strict = settings(|_| {});
    let mut s = connected(&bus, &strict, "1.2");
    assert_eq!(
        feed(&mut s, b"SEND\ndestination:/odd/x\n\nm\0"),
        Flow::Close
    );
    assert_eq!(error_message(&output(&mut s)), Some("Unknown destination"));

    let lenient = settings(|s| s.unknown_destination = UnknownDestination::Topic);
    let mut s = connected(&bus, &lenient, "1.2");
    feed(&mut s, b"SUBSCRIBE\nid:1\ndestination:/odd/x\n\n\0");
    feed(&mut s, b"SEND\ndestination:/odd/x\n\nm\0");
    let out = pump(&mut s);
    assert_eq!(value(&out[0], "destination"), Some("/odd/x"));
}

#[test]
fn frames_after_disconnect_are_ignored_and_shutdown_says_so() {
    let (bus, settings) = defaults();
    let mut s = connected(&bus, &settings, "1.2");
    let flow = feed(
        &mut s,
        b"DISCONNECT\nreceipt:bye\n\n\0SEND\ndestination:/topic/t\n\nx\0",
    );
    assert_eq!(flow, Flow::Close);
    assert_eq!(
        output(&mut s),
        vec![Frame::receipt(Bytes::from_static(b"bye"))]
    );
    assert!(!s.is_connected());

    let mut live = connected(&bus, &settings, "1.2");
    assert_eq!(live.shutdown(), Flow::Close);
    assert_eq!(
        error_message(&output(&mut live)),
        Some("server shutting down")
    );
}

#[test]
fn sending_into_a_full_blocking_group_pauses_decoding() {
    let mut config = BusConfig::default();
    config.groups.push(core_bus::config::GroupRule {
        topics: Pattern::parse("slow").unwrap(),
        policy: GroupPolicy {
            overflow: core_bus::config::GroupOverflow::Block,
            max_messages: 1,
            ..GroupPolicy::QUEUE
        },
    });
    let bus = Bus::new(config);
    let settings = settings(|_| {});
    let mut s = connected(&bus, &settings, "1.2");
    let mut buf = BytesMut::from(
        &b"SEND\ndestination:/queue/slow\n\n1\0SEND\ndestination:/queue/slow\n\n2\0\
           SEND\ndestination:/queue/slow\n\n3\0"[..],
    );
    assert_eq!(s.handle_input(&mut buf, core_bus::now_ms()), Flow::Continue);
    assert!(s.take_backpressure().is_some());
    assert!(!buf.is_empty(), "frames after the blocked SEND wait");
}

#[test]
fn messages_from_other_protocols_get_stomp_headers() {
    let (bus, settings) = defaults();
    let mut s = connected(&bus, &settings, "1.1");
    feed(
        &mut s,
        b"SUBSCRIBE\nid:1\ndestination:/topic/metrics.#\n\n\0",
    );
    let origin = Origin {
        protocol: Protocol::Loom,
        connection: ConnectionId::next(),
    };
    let mut envelope =
        core_bus::Envelope::new(Topic::from_dotted(b"metrics.cpu"), &b"42"[..], origin);
    envelope.content_type = Some("text/plain".into());
    envelope.key = Some(Bytes::from_static(b"host-1"));
    envelope.reply_to = Some(Topic::from_dotted(b"answers"));
    bus.publish(envelope);
    let message = pump(&mut s).remove(0);
    assert_eq!(value(&message, "destination"), Some("/topic/metrics.cpu"));
    assert_eq!(value(&message, "content-type"), Some("text/plain"));
    assert_eq!(value(&message, "JMSXGroupID"), Some("host-1"));
    assert_eq!(value(&message, "reply-to"), Some("/topic/answers"));
    assert_eq!(value(&message, "ack"), None);
}

/// Pumps until `want` frames came out.
async fn pump_until(session: &mut Session, want: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    for _ in 0..400 {
        out.extend(pump(session));
        if out.len() >= want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    out
}

#[tokio::test]
async fn rabbitmq_durable_subscription_keeps_messages_while_away() {
    let (bus, settings) = defaults();
    let subscribe =
        b"SUBSCRIBE\nid:d1\ndestination:/topic/news.*\ndurable:true\nauto-delete:false\n\n\0";
    let mut away = connected(&bus, &settings, "1.2");
    feed(&mut away, subscribe);
    drop(away);
    assert_eq!(bus.durable_bindings(), 1);
    let mut producer = connected(&bus, &settings, "1.2");
    feed(
        &mut producer,
        b"SEND\ndestination:/topic/news.a\nx-k:v\n\nkept\0",
    );
    let mut back = connected(&bus, &settings, "1.2");
    feed(&mut back, subscribe);
    let got = pump_until(&mut back, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], b"kept");
    assert_eq!(value(&got[0], "destination"), Some("/topic/news.a"));
    assert_eq!(value(&got[0], "subscription"), Some("d1"));
    assert_eq!(value(&got[0], "x-k"), Some("v"));
    assert_eq!(value(&got[0], SOURCE_TOPIC_HEADER), None);

    feed(&mut back, b"UNSUBSCRIBE\nid:d1\n\n\0");
    assert_eq!(
        bus.durable_bindings(),
        1,
        "a plain UNSUBSCRIBE keeps the queue"
    );
    feed(
        &mut back,
        b"UNSUBSCRIBE\nid:d1\ndestination:/topic/news.*\ndurable:true\n\n\0",
    );
    assert_eq!(bus.durable_bindings(), 0);
}

#[tokio::test]
async fn activemq_durable_subscription_needs_client_id() {
    let (bus, settings) = defaults();
    let mut anonymous = connected(&bus, &settings, "1.1");
    let flow = feed(
        &mut anonymous,
        b"SUBSCRIBE\nid:1\ndestination:/topic/t\nactivemq.subscriptionName:s\n\n\0",
    );
    assert_eq!(flow, Flow::Close);
    assert_eq!(
        error_message(&output(&mut anonymous)),
        Some("Invalid header")
    );

    let mut s = session(&bus, &settings);
    feed(&mut s, b"CONNECT\naccept-version:1.1\nclient-id:app\n\n\0");
    output(&mut s);
    feed(
        &mut s,
        b"SUBSCRIBE\nid:1\ndestination:/topic/t\nactivemq.subscriptionName:s\n\n\0",
    );
    feed(&mut s, b"SEND\ndestination:/topic/t\n\nm\0");
    let got = pump_until(&mut s, 1).await;
    assert_eq!(value(&got[0], "destination"), Some("/topic/t"));
    let queue = durable::queue("app", "s");
    assert!(bus.topics().iter().any(|t| t.topic == queue.as_str()));
    feed(
        &mut s,
        b"UNSUBSCRIBE\nid:1\ndurable-subscription-name:s\n\n\0",
    );
    assert_eq!(bus.durable_bindings(), 0);
}

#[tokio::test]
async fn durable_subscriptions_are_capped_over_all_connections() {
    let bus = Bus::new(BusConfig::default());
    let settings = settings(|s| s.max_durable_subscriptions = 1);
    let mut a = connected(&bus, &settings, "1.2");
    let flow = feed(
        &mut a,
        b"SUBSCRIBE\nid:d\ndestination:/topic/a\npersistent:true\n\n\0",
    );
    assert_eq!(flow, Flow::Continue);
    let mut b = connected(&bus, &settings, "1.2");
    let flow = feed(
        &mut b,
        b"SUBSCRIBE\nid:d\ndestination:/topic/b\ndurable:true\n\n\0",
    );
    assert_eq!(flow, Flow::Close);
    assert_eq!(
        error_message(&output(&mut b)),
        Some("Too many durable subscriptions")
    );
    let mut again = connected(&bus, &settings, "1.2");
    let flow = feed(
        &mut again,
        b"SUBSCRIBE\nid:d\ndestination:/topic/a\npersistent:true\n\n\0",
    );
    assert_eq!(
        flow,
        Flow::Continue,
        "the existing queue can still be joined"
    );
}

fn arbitrary_frame() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let command = prop::sample::select(vec![
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
        "MESSAGE",
    ]);
    let name = prop::sample::select(vec![
        "destination",
        "id",
        "ack",
        "transaction",
        "receipt",
        "reply-to",
        "message-id",
        "prefetch-count",
        "selector",
        "accept-version",
        "heart-beat",
        "JMSXGroupID",
    ]);
    let value = prop::sample::select(vec![
        "/topic/a",
        "/topic/a.#",
        "/queue/q",
        "/temp-queue/t",
        "/reply-queue/1.x",
        "/reply-queue/%",
        "/bogus",
        "client",
        "client-individual",
        "auto",
        "1",
        "2",
        "1-0",
        "1-1",
        "tx",
        "-1",
        "1.0,1.2",
        "10,10",
        "",
        "$inbox.1.x",
    ]);
    let headers = prop::collection::vec((name, value), 0..5);
    let body = prop::collection::vec(any::<u8>(), 0..8);
    (command, headers, body).prop_map(|(command, headers, body)| {
        let mut out = format!("{command}\n").into_bytes();
        for (n, v) in headers {
            out.extend_from_slice(format!("{n}:{v}\n").as_bytes());
        }
        out.extend_from_slice(format!("content-length:{}\n\n", body.len()).as_bytes());
        out.extend_from_slice(&body);
        out.push(0);
        out
    })
}

proptest::proptest! {
    /// Any sequence of frames, valid or not, from two connections sharing a bus never panics
    /// the sessions, and a closed session stays closed.
    #[test]
    fn random_frame_sequences_never_panic(
        frames in proptest::collection::vec((proptest::bool::ANY, arbitrary_frame()), 1..24),
    ) {
        let bus = Bus::new(BusConfig::default());
        let settings = settings(|s| s.max_subscriptions = 3);
        let mut sessions = [connected(&bus, &settings, "1.2"), connected(&bus, &settings, "1.0")];
        let mut closed = [false, false];
        for (which, frame) in frames {
            let i = usize::from(which);
            let flow = feed(&mut sessions[i], &frame);
            if closed[i] {
                proptest::prop_assert_eq!(flow, Flow::Close);
            }
            closed[i] |= flow == Flow::Close;
            for session in &mut sessions {
                pump(session);
            }
        }
    }
}
