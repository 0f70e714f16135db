//! Goomerang sessions against an in-process bus: pub/sub, broadcast, the sync-request bridge (the test
//! plays the responder on `$rpc.goomerang.<kind>`), ACLs, foreign messages and size limits.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use core_bus::config::BusConfig;
use core_bus::{Bus, Envelope, Mailbox, Pattern, Protocol, Topic};
use proptest::prelude::*;
use prost::Message;
use protocols::auth::{Allowed, Identity};
use protocols::goomerang::bridge::routing::ForeignKindRule;
use protocols::goomerang::bridge::{command_headers, rpc_topic};
use protocols::goomerang::codec::proto::Frame;
use protocols::goomerang::{
    encode_command, CloseReason, Command, ForeignKinds, FrameHeaders, Inbound, Limits, SendRoutes,
    Session, SessionSettings, WrapperKind,
};

const KIND: &str = "goomerang.example.MessageV1";

fn settings() -> SessionSettings {
    SessionSettings {
        limits: Limits::default(),
        wrapper_kind: WrapperKind::default(),
        max_subscriptions: 8,
        send_routes: SendRoutes::default(),
        foreign_kinds: ForeignKinds::default(),
    }
}

fn session(bus: &Bus) -> Session {
    session_as(bus, Identity::trusted("anonymous"), settings())
}

/// An anonymous session with the default settings as `change` leaves them.
fn session_with(bus: &Bus, change: impl FnOnce(&mut SessionSettings)) -> Session {
    let mut settings = settings();
    change(&mut settings);
    session_as(bus, Identity::trusted("anonymous"), settings)
}

fn session_as(bus: &Bus, identity: Identity, settings: SessionSettings) -> Session {
    Session::new(bus, origin(Protocol::Goomerang), identity, settings).unwrap()
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// `goomerang.example.MessageV1 { message = text }`.
fn message_v1(text: &str) -> Bytes {
    let mut bytes = vec![0x0a, text.len() as u8];
    bytes.extend_from_slice(text.as_bytes());
    Bytes::from(bytes)
}

fn headers(pairs: &[(&str, &str)]) -> FrameHeaders {
    pairs.iter().copied().collect()
}

/// Sends `command` as the client would and expects the session to keep reading.
fn send(session: &mut Session, command: Command) {
    let inbound = session.handle_input(encode_command(&command, now()), core_bus::now_ms());
    assert!(matches!(inbound, Inbound::Continue), "{inbound:?}");
}

fn subscribe(session: &mut Session, topic: &str) {
    send(
        session,
        Command::Subscribe {
            topic: topic.into(),
        },
    );
}

fn publish(session: &mut Session, topic: &str, text: &str, user: &[(&str, &str)]) {
    send(
        session,
        Command::Publish {
            topic: topic.into(),
            kind: KIND.into(),
            message: message_v1(text),
            headers: command_headers(&headers(user)),
        },
    );
}

/// A SendSync of `goomerang.example.MessageV1 { "ping" }` with request id `uuid` and the `user` headers.
fn send_sync(uuid: &str, user: &[(&str, &str)]) -> Command {
    Command::SendSync {
        uuid: uuid.into(),
        kind: KIND.into(),
        payload: message_v1("ping"),
        headers: headers(user),
    }
}

/// A direct Send of `goomerang.example.MessageV1 { text }` with the `user` headers.
fn direct(text: &str, user: &[(&str, &str)]) -> Command {
    Command::Send {
        kind: KIND.into(),
        payload: message_v1(text),
        headers: headers(user),
    }
}

/// Every frame the session would write now.
fn frames(session: &mut Session) -> Vec<Frame> {
    let mut deliveries = Vec::new();
    session
        .mailbox()
        .try_recv_batch(&mut deliveries, usize::MAX)
        .unwrap();
    deliveries
        .into_iter()
        .filter_map(|delivery| session.handle_delivery(delivery, now()))
        .map(|bytes| Frame::decode(bytes).unwrap())
        .collect()
}

fn frame_headers(frame: &Frame) -> Vec<(String, String)> {
    frame
        .headers
        .iter()
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn publish_reaches_subscribers_and_the_publisher_with_plain_frames() {
    let bus = Bus::new(BusConfig::default());
    let mut alice = session(&bus);
    let mut bob = session(&bus);
    subscribe(&mut alice, "news.eu");
    subscribe(&mut alice, "news.eu");
    subscribe(&mut bob, "news.eu");
    assert_eq!(alice.subscription_count(), 1);

    publish(&mut alice, "news.eu", "hi", &[("a", "b")]);
    for frames in [frames(&mut alice), frames(&mut bob)] {
        // Subscribing twice is idempotent: one delivery each.
        assert_eq!(frames.len(), 1);
        let frame = &frames[0];
        assert_eq!(frame.kind, KIND);
        assert_eq!(frame.payload, message_v1("hi"));
        assert_eq!(frame.payload_size, 4);
        assert_eq!(frame_headers(frame), pairs(&[("a", "b")]));
        assert!(frame.uuid.is_empty() && !frame.is_sync);
        assert_eq!(frame.creation.unwrap().seconds, 1_700_000_000);
    }

    // The bus sees the body verbatim, with the kind header and the protobuf content type.
    let mut other = bus.mailbox(origin(Protocol::Stomp));
    other
        .subscribe(Pattern::exact(&Topic::from_dotted(b"news.eu")))
        .unwrap();
    publish(&mut bob, "news.eu", "again", &[]);
    let envelope = other.try_recv_one();
    assert_eq!(envelope.payload, message_v1("again"));
    assert_eq!(envelope.headers.get_str("goomerang-kind"), Some(KIND));
    assert_eq!(
        envelope.content_type.as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(frames(&mut alice).len(), 1);
    assert_eq!(frames(&mut bob).len(), 1);

    send(
        &mut alice,
        Command::Unsubscribe {
            topic: "news.eu".into(),
        },
    );
    send(
        &mut alice,
        Command::Unsubscribe {
            topic: "news.eu".into(),
        },
    );
    assert_eq!(alice.subscription_count(), 0);
    publish(&mut bob, "news.eu", "gone", &[]);
    assert!(frames(&mut alice).is_empty());
    assert_eq!(frames(&mut bob).len(), 1);
}

/// Receives one envelope from a plain bus mailbox.
trait RecvOne {
    fn try_recv_one(&mut self) -> std::sync::Arc<Envelope>;
}

impl RecvOne for Mailbox {
    fn try_recv_one(&mut self) -> std::sync::Arc<Envelope> {
        let mut out = Vec::new();
        assert_eq!(self.try_recv_batch(&mut out, 1).unwrap(), 1);
        out.remove(0).envelope
    }
}

#[test]
fn broadcast_reaches_every_connection_including_the_sender() {
    let bus = Bus::new(BusConfig::default());
    let mut sessions: Vec<Session> = (0..3).map(|_| session(&bus)).collect();
    send(
        &mut sessions[1],
        Command::Broadcast {
            kind: KIND.into(),
            message: message_v1("all"),
            headers: command_headers(&headers(&[("h", "1")])),
        },
    );
    for session in &mut sessions {
        let frames = frames(session);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].kind, KIND);
        assert_eq!(frames[0].payload, message_v1("all"));
        assert_eq!(frame_headers(&frames[0]), pairs(&[("h", "1")]));
    }
    // Clients cannot name the broadcast topic (or any internal topic) themselves.
    subscribe(&mut sessions[0], "$goomerang.broadcast");
    assert_eq!(sessions[0].subscription_count(), 0);
}

#[test]
fn sync_request_is_bridged_and_the_first_reply_comes_back() {
    let bus = Bus::new(BusConfig::default());
    let mut client = session(&bus);
    let mut responder = bus.mailbox(origin(Protocol::Internal));
    let rpc = rpc_topic(KIND);
    assert_eq!(
        rpc.as_str(),
        "$rpc.goomerang.goomerang%2Eexample%2EMessageV1"
    );
    responder.subscribe(Pattern::exact(&rpc)).unwrap();

    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    send(&mut client, send_sync(uuid, &[("trace", "7")]));
    let request = responder.try_recv_one();
    assert_eq!(request.payload, message_v1("ping"));
    assert_eq!(request.correlation_id.as_deref(), Some(uuid));
    assert_eq!(request.headers.get_str("goomerang-kind"), Some(KIND));
    assert_eq!(request.headers.get_str("trace"), Some("7"));
    let reply_to = request.reply_to.clone().expect("reply_to");
    assert!(reply_to.as_str().starts_with("$inbox."), "{reply_to}");

    // The responder answers twice, and once with a correlation id nobody waits for.
    let reply = |correlation: &str, text: &str| {
        let mut envelope = Envelope::new(
            reply_to.clone(),
            message_v1(text),
            origin(Protocol::Internal),
        );
        envelope.correlation_id = Some(correlation.into());
        envelope
            .headers
            .push("goomerang-kind", "goomerang.example.ReplyV1");
        envelope
    };
    bus.publish(reply("someone-else", "stray"));
    bus.publish(reply(uuid, "pong"));
    bus.publish(reply(uuid, "late"));
    let frames = frames(&mut client);
    assert_eq!(frames.len(), 1, "{frames:?}");
    let frame = &frames[0];
    assert_eq!(frame.uuid, uuid);
    assert!(frame.is_sync);
    assert_eq!(frame.kind, "goomerang.example.ReplyV1");
    assert_eq!(frame.payload, message_v1("pong"));
    assert_eq!(frame.payload_size, 6);

    // A foreign reply (no kind header) comes back wrapped, with its content type.
    send(&mut client, send_sync("second", &[]));
    let request = responder.try_recv_one();
    let mut foreign = Envelope::new(
        request.reply_to.clone().unwrap(),
        Bytes::from_static(b"{}"),
        origin(Protocol::Stomp),
    );
    foreign.correlation_id = request.correlation_id.clone();
    foreign.content_type = Some("application/json".into());
    bus.publish(foreign);
    let frames = self::frames(&mut client);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        (frames[0].uuid.as_str(), frames[0].is_sync),
        ("second", true)
    );
    assert_eq!(frames[0].kind, "google.protobuf.BytesValue");
    assert_eq!(frames[0].payload, Bytes::from_static(b"\x0a\x02{}"));
    assert_eq!(
        frame_headers(&frames[0]),
        pairs(&[("content-type", "application/json")])
    );
}

#[test]
fn sync_request_without_responder_gets_nothing() {
    let bus = Bus::new(BusConfig::default());
    let mut client = session(&bus);
    send(&mut client, send_sync("u1", &[]));
    // Nothing waits for u1, so even a reply sent to the inbox by guesswork is dropped.
    let inbox = client.reply_inbox().clone();
    let mut reply = Envelope::new(inbox, message_v1("pong"), origin(Protocol::Internal));
    reply.correlation_id = Some("u1".into());
    bus.publish(reply);
    assert!(frames(&mut client).is_empty());

    // A plain direct send nobody handles: dropped (unroutable), the session goes on.
    send(&mut client, direct("x", &[]));
    assert!(frames(&mut client).is_empty());
}

#[test]
fn direct_send_goes_to_the_kind_topic_with_the_sender_identity() {
    let bus = Bus::new(BusConfig::default());
    let mut client = session_as(&bus, Identity::trusted("alice"), settings());
    let mut handler = bus.mailbox(origin(Protocol::Stomp));
    handler
        .subscribe(Pattern::parse("goomerang.send.#").unwrap())
        .unwrap();
    send(
        &mut client,
        direct("do it", &[("trace", "7"), ("goomerang-sender", "mallory")]),
    );
    let request = handler.try_recv_one();
    assert_eq!(
        request.topic.as_str(),
        "goomerang.send.goomerang.example.MessageV1"
    );
    assert_eq!(request.payload, message_v1("do it"));
    assert_eq!(request.headers.get_str("goomerang-kind"), Some(KIND));
    assert_eq!(request.headers.get_str("trace"), Some("7"));
    assert_eq!(
        request.headers.get_str("goomerang-sender"),
        Some("alice"),
        "the identity is gatewayd's, never the client's header"
    );
    assert_eq!(request.reply_to, None);

    // A per-kind override.
    let overrides = [(KIND.to_owned(), "orders.commands".to_owned())].into();
    let mut routed = session_as(
        &bus,
        Identity::trusted("bob"),
        SessionSettings {
            send_routes: SendRoutes::new("goomerang.send", &overrides).unwrap(),
            ..settings()
        },
    );
    handler
        .subscribe(Pattern::parse("orders.commands").unwrap())
        .unwrap();
    send(&mut routed, direct("x", &[]));
    let request = handler.try_recv_one();
    assert_eq!(request.topic.as_str(), "orders.commands");
    assert_eq!(request.headers.get_str("goomerang-sender"), Some("bob"));
}

#[test]
fn foreign_kinds_deliver_matching_bodies_as_their_kind() {
    let bus = Bus::new(BusConfig::default());
    let rules = [ForeignKindRule {
        topic: "orders.#".into(),
        kind: KIND.into(),
    }];
    let mut client = session_with(&bus, |s| {
        s.foreign_kinds = ForeignKinds::new(&rules).unwrap()
    });
    subscribe(&mut client, "orders.eu");
    subscribe(&mut client, "other");
    for topic in ["orders.eu", "other"] {
        let mut envelope = Envelope::new(
            Topic::from_dotted(topic.as_bytes()),
            message_v1("native"),
            origin(Protocol::Stomp),
        );
        envelope.content_type = Some("application/x-protobuf".into());
        envelope.headers.push("priority", "9");
        bus.publish(envelope);
    }
    let frames = frames(&mut client);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].kind, KIND);
    assert_eq!(frames[0].payload, message_v1("native"));
    assert_eq!(frame_headers(&frames[0]), pairs(&[("priority", "9")]));
    assert_eq!(
        frames[1].kind, "google.protobuf.BytesValue",
        "no rule: wrapped"
    );
}

#[test]
fn acl_refusals_drop_the_command() {
    let bus = Bus::new(BusConfig::default());
    let limited = Identity {
        name: "limited".into(),
        publish: Allowed::Patterns(vec![Pattern::parse("news.#").unwrap()]),
        subscribe: Allowed::Patterns(vec![Pattern::parse("news.*").unwrap()]),
    };
    let mut client = session_as(&bus, limited, settings());
    let mut watcher = session(&bus);
    subscribe(&mut watcher, "secret");
    subscribe(&mut watcher, "news.eu");

    subscribe(&mut client, "secret");
    subscribe(&mut client, "news.eu");
    assert_eq!(client.subscription_count(), 1);
    publish(&mut client, "secret", "no", &[]);
    // Broadcast needs `$goomerang.broadcast` listed exactly: wildcards never match internal topics.
    send(
        &mut client,
        Command::Broadcast {
            kind: KIND.into(),
            message: message_v1("no"),
            headers: FrameHeaders::new(),
        },
    );
    assert!(frames(&mut watcher).is_empty());
    publish(&mut client, "news.eu", "yes", &[]);
    assert_eq!(frames(&mut watcher).len(), 1);
    assert_eq!(frames(&mut client).len(), 1);
}

#[test]
fn subscription_limit_is_enforced() {
    let bus = Bus::new(BusConfig::default());
    let mut client = session_with(&bus, |s| s.max_subscriptions = 2);
    for topic in ["a", "b", "c"] {
        subscribe(&mut client, topic);
    }
    assert_eq!(client.subscription_count(), 2);
    publish(&mut client, "c", "x", &[]);
    assert!(frames(&mut client).is_empty());
}

#[test]
fn foreign_messages_are_wrapped_with_the_configured_kind() {
    let bus = Bus::new(BusConfig::default());
    let mut client = session_with(&bus, |s| {
        s.wrapper_kind = WrapperKind::new("acme.Blob").unwrap()
    });
    subscribe(&mut client, "orders.eu");
    let mut envelope = Envelope::new(
        Topic::from_dotted(b"orders.eu"),
        Bytes::from_static(b"hello"),
        origin(Protocol::Stomp),
    );
    envelope.content_type = Some("text/plain".into());
    envelope.headers.push("priority", "9");
    bus.publish(envelope);
    let frames = frames(&mut client);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].kind, "acme.Blob");
    assert_eq!(frames[0].payload, Bytes::from_static(b"\x0a\x05hello"));
    assert_eq!(
        frame_headers(&frames[0]),
        pairs(&[("content-type", "text/plain"), ("priority", "9")])
    );
}

#[test]
fn size_limits_drop_deliveries_and_close_on_huge_messages() {
    let bus = Bus::new(BusConfig::default());
    let mut client = session_with(&bus, |s| s.limits.max_message_size = 128);
    subscribe(&mut client, "big");
    let mut sender = session(&bus);
    publish(&mut sender, "big", &"x".repeat(100), &[]);
    publish(&mut sender, "big", "fits", &[]);
    let frames = frames(&mut client);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].payload, message_v1("fits"));

    let huge = encode_command(
        &Command::Publish {
            topic: "big".into(),
            kind: KIND.into(),
            message: Bytes::from(vec![0u8; 200]),
            headers: FrameHeaders::new(),
        },
        now(),
    );
    assert!(matches!(
        client.handle_input(huge, core_bus::now_ms()),
        Inbound::Close(CloseReason::MessageTooBig)
    ));
}

#[test]
fn garbage_and_unknown_kinds_are_dropped() {
    let bus = Bus::new(BusConfig::default());
    let mut client = session(&bus);
    for garbage in [
        &b"\xff\xff\xff"[..],
        b"",
        b"\x12\x1dgoomerang.protocol.PublishCmd\x3a\x02\xff\xff",
        b"\x12\x1cgoomerang.protocol.RpcCmdXYZ",
    ] {
        assert!(matches!(
            client.handle_input(Bytes::copy_from_slice(garbage), core_bus::now_ms()),
            Inbound::Continue
        ));
    }
    subscribe(&mut client, "still.alive");
    assert_eq!(client.subscription_count(), 1);
}

proptest! {
    /// Random and mutated client messages never panic the session, and it keeps working afterwards.
    #[test]
    fn random_and_mutated_messages_never_panic(
        random in proptest::collection::vec(any::<u8>(), 0..256),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let bus = Bus::new(BusConfig::default());
        let mut client = session(&bus);
        let _ = client.handle_input(Bytes::from(random), core_bus::now_ms());
        let mut mutated = encode_command(
            &Command::Publish {
                topic: "t".into(),
                kind: KIND.into(),
                message: message_v1("x"),
                headers: command_headers(&headers(&[("a", "b")])),
            },
            now(),
        )
        .to_vec();
        for (at, xor) in flips {
            let len = mutated.len();
            mutated[at % len] ^= xor;
        }
        let _ = client.handle_input(Bytes::from(mutated), core_bus::now_ms());
        let _ = frames(&mut client);
        subscribe(&mut client, "after");
        publish(&mut client, "after", "ok", &[]);
        let frames = frames(&mut client);
        prop_assert_eq!(frames.last().map(|f| f.payload.clone()), Some(message_v1("ok")));
    }
}
