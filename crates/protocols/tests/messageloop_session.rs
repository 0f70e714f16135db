//! The MessageLoop session driven against an in-process bus: Connect rules, auth codes, version gate,
//! subscriptions (wildcards, dedupe, cap), publish/ack/delivery, history recovery, presence, RPC with the
//! test acting as responder, RPC and Connect tokens routed to a backend proxy (the test answering the
//! queued calls), idle disconnect, and messages from other protocols.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use core_bus::config::{BusConfig, HistoryPolicy, HistoryRule};
use core_bus::{Bus, ConnectionId, Envelope, Pattern, Protocol, Topic};
use protocols::auth::{AuthConfig, Authenticator, Identity, StaticToken};
use protocols::messageloop::bridge::deliveries::Deliveries;
use protocols::messageloop::codec::shared::SharedPublication;
use protocols::messageloop::message::{
    Connect, Error, Inbound, InboundBody, Outbound, OutboundBody, Payload, PayloadData, Position,
    PresenceAction, Publish, RecoverState, RpcRequest, Subscription,
};
use protocols::messageloop::presence::PresenceTable;
use protocols::messageloop::proxy::call::{ProxyReply, ProxyRequest};
use protocols::messageloop::proxy::{
    Hooks, ProxyAnswer, ProxyConfig, ProxyFailure, Router, RpcFallback,
};
use protocols::messageloop::session::{Now, Session, SessionContext, SessionSettings};
use protocols::messageloop::{DisconnectCode, ErrorCode, Generation};

struct World {
    bus: Bus,
    context: SessionContext,
    start: Instant,
}

impl World {
    fn new(required: bool) -> World {
        World::with_proxies(required, &[], RpcFallback::Bus)
    }

    fn with_proxies(required: bool, proxies: &[ProxyConfig], rpc_fallback: RpcFallback) -> World {
        let bus = Bus::new(BusConfig {
            history: vec![HistoryRule {
                topics: Pattern::parse("hist.#").unwrap(),
                policy: HistoryPolicy {
                    max_messages: 100,
                    max_bytes: 1 << 20,
                    ttl: Duration::ZERO,
                },
            }],
            ..BusConfig::default()
        });
        let auth = AuthConfig {
            required,
            tokens: vec![StaticToken {
                login: None,
                token: "good".into(),
                identity: Identity::trusted("alice"),
            }],
            ..AuthConfig::default()
        };
        let context = SessionContext {
            bus: bus.clone(),
            authenticator: Arc::new(Authenticator::new(auth).unwrap()),
            presence: PresenceTable::default(),
            settings: Arc::new(SessionSettings {
                max_subscriptions: 3,
                idle_timeout: Some(Duration::from_secs(300)),
                rpc_timeout: Duration::from_secs(30),
                rpc_fallback,
                epoch: "epoch-1".into(),
            }),
            router: Arc::new(Router::new(proxies)),
            hooks: Arc::new(Hooks::none()),
            deliveries: Deliveries::default(),
        };
        World {
            bus,
            context,
            start: Instant::now(),
        }
    }

    fn at(&self, secs: u64) -> Now {
        Now {
            at: self.start + Duration::from_secs(secs),
            unix_ms: 1_000 + secs * 1_000,
        }
    }

    fn session(&self, generation: Generation) -> Session {
        let mut session = Session::new(self.context.clone(), ConnectionId::next(), self.at(0));
        session.set_generation(Some(generation));
        session
    }

    fn connected(&self, generation: Generation) -> Session {
        let mut session = self.session(generation);
        send(&mut session, "c", connect("2.0.0", ""), self.at(0));
        let out = session.poll_transmit();
        assert!(matches!(
            out.last().unwrap().body,
            OutboundBody::Connected(_)
        ));
        session
    }
}

fn connect(version: &str, token: &str) -> InboundBody {
    InboundBody::Connect(Connect {
        client_id: "client".into(),
        version: version.into(),
        token: token.into(),
        ..Connect::default()
    })
}

fn send(session: &mut Session, id: &str, body: InboundBody, now: Now) {
    session.handle_input(
        Inbound {
            id: id.into(),
            body,
        },
        now,
    );
}

fn publish(channel: &str, text: &str) -> InboundBody {
    InboundBody::Publish(Publish {
        channel: channel.into(),
        payload: Payload::text("text/plain", text),
        ..Publish::default()
    })
}

/// A subscription to `channel` that recovers what followed `offset` in `stream_epoch`.
fn recovering(channel: &str, stream_epoch: &str, offset: u64) -> Subscription {
    Subscription {
        recover: true,
        cursor: Some(Position {
            stream_epoch: stream_epoch.into(),
            offset: Some(offset),
        }),
        ..Subscription::channel(channel)
    }
}

fn subscribe(channels: &[&str]) -> InboundBody {
    InboundBody::Subscribe(channels.iter().map(|c| Subscription::channel(*c)).collect())
}

/// Moves every queued delivery into the session and returns its outbox.
fn pump(session: &mut Session, now: Now) -> Vec<Outbound> {
    let mut deliveries = Vec::new();
    session
        .mailbox()
        .try_recv_batch(&mut deliveries, 1000)
        .unwrap();
    session.handle_deliveries(deliveries, now);
    session.poll_transmit()
}

fn error_code(out: &Outbound) -> Option<&str> {
    match &out.body {
        OutboundBody::Error(error) => Some(error.code.as_str()),
        _ => None,
    }
}

/// Asserts that the first envelope the session sends answers `id` with the error `code`.
fn assert_first_error(session: &mut Session, id: &str, code: &str) {
    let out = session.poll_transmit();
    assert_eq!((out[0].id.as_str(), error_code(&out[0])), (id, Some(code)));
}

#[test]
fn connect_must_come_first_and_only_once() {
    let world = World::new(false);
    let mut session = world.session(Generation::G2);
    send(&mut session, "1", InboundBody::Ping, world.at(0));
    assert_eq!(session.disconnect(), Some(DisconnectCode::InvalidToken));
    assert!(session.poll_transmit().is_empty());

    let mut session = world.connected(Generation::G2);
    send(&mut session, "2", InboundBody::Ping, world.at(1));
    let out = session.poll_transmit();
    assert_eq!(out[0].id, "2");
    assert_eq!(out[0].body, OutboundBody::Pong);
    send(&mut session, "3", connect("2.0.0", ""), world.at(1));
    assert_eq!(session.disconnect(), Some(DisconnectCode::BadRequest));

    let mut session = world.connected(Generation::G2);
    session.on_undecodable(world.at(1));
    assert_eq!(error_code(&session.poll_transmit()[0]), Some("BAD_REQUEST"));
    assert_eq!(session.disconnect(), None);
    session.on_empty(world.at(1));
    assert_eq!(session.disconnect(), Some(DisconnectCode::BadRequest));
}

#[test]
fn auth_and_version_failures() {
    let world = World::new(true);
    for (token, code) in [("", "AUTH_REQUIRED"), ("bad", "AUTH_ERROR")] {
        let mut session = world.session(Generation::G1);
        send(&mut session, "c", connect("1.0.0", token), world.at(0));
        let out = session.poll_transmit();
        assert_eq!((out[0].id.as_str(), error_code(&out[0])), ("c", Some(code)));
        assert_eq!(session.disconnect(), Some(DisconnectCode::InvalidToken));
    }
    let mut session = world.session(Generation::G2);
    send(&mut session, "c", connect("1.0.0", "good"), world.at(0));
    assert_eq!(
        error_code(&session.poll_transmit()[0]),
        Some("VERSION_UNSUPPORTED")
    );
    assert_eq!(
        session.disconnect(),
        Some(DisconnectCode::UnsupportedVersion)
    );
    let mut session = world.session(Generation::G2);
    send(&mut session, "c", connect("2.1.0", "good"), world.at(0));
    assert!(matches!(
        session.poll_transmit()[0].body,
        OutboundBody::Connected(_)
    ));
    assert_eq!(session.identity().unwrap().name, "alice");
}

#[test]
fn connect_subscriptions_come_before_connected_with_errors_first() {
    let world = World::new(false);
    let mut session = world.session(Generation::G2);
    let mut body = connect("2.0.0", "");
    if let InboundBody::Connect(connect) = &mut body {
        connect.subscriptions = vec![Subscription::channel("a.b"), Subscription::channel("*.x")];
    }
    send(&mut session, "c", body, world.at(0));
    let out = session.poll_transmit();
    assert_eq!(error_code(&out[0]), Some("PATTERN_NOT_ROUTABLE"));
    assert_eq!(out[0].id, "c");
    let OutboundBody::Connected(connected) = &out[1].body else {
        panic!("{out:?}")
    };
    assert_eq!(connected.subscriptions, ["a.b"]);
    assert!(matches!(out[2].body, OutboundBody::Presence(_)));
}

#[test]
fn publish_reaches_every_subscriber_once_including_the_publisher() {
    let world = World::new(false);
    let mut alice = world.connected(Generation::G2);
    let mut bob = world.connected(Generation::G2);
    send(
        &mut alice,
        "s",
        subscribe(&["chat.room", "chat.*", "chat.**"]),
        world.at(1),
    );
    let ack = alice.poll_transmit();
    let OutboundBody::SubscribeAck(ack) = &ack[0].body else {
        panic!("{ack:?}")
    };
    assert_eq!(ack.subscriptions.len(), 3);
    assert_eq!(ack.recover, RecoverState::None);
    send(&mut bob, "p", publish("chat.room", "hi"), world.at(1));
    let out = bob.poll_transmit();
    let OutboundBody::PublishAck(position) = &out[0].body else {
        panic!("{out:?}")
    };
    assert_eq!(out[0].id, "p");
    assert_eq!(position.offset, None);
    let delivered = pump(&mut alice, world.at(1));
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let Some(messages) = delivered[0].body.messages() else {
        panic!("{delivered:?}")
    };
    assert_eq!(messages[0].channel, "chat.room");
    assert_eq!(messages[0].payload, Payload::text("text/plain", "hi"));
    assert_eq!(messages[0].position.offset, Some(0));

    send(&mut alice, "p2", publish("chat.other", "own"), world.at(2));
    let own = pump(&mut alice, world.at(2));
    assert!(matches!(own[0].body, OutboundBody::PublishAck(_)));
    assert!(own[1].body.messages().is_some());
    assert_eq!(own.len(), 2);

    send(&mut bob, "w", publish("chat.*", "x"), world.at(2));
    assert_eq!(error_code(&bob.poll_transmit()[0]), Some("BAD_REQUEST"));
}

/// The shared publication of the one message among `out` (presence events aside), or `None` for one built for this
/// subscriber alone.
fn shared_of(out: &[Outbound]) -> Option<Arc<SharedPublication>> {
    let publications: Vec<_> = out.iter().filter(|o| o.body.messages().is_some()).collect();
    assert_eq!(publications.len(), 1, "{out:?}");
    match &publications[0].body {
        OutboundBody::Delivered(shared) => Some(shared.clone()),
        OutboundBody::Publication(messages) => {
            assert_eq!(messages.len(), 1);
            None
        }
        _ => panic!("{out:?}"),
    }
}

/// A message two subscribers hold is built once and shared, the later subscriber finding the earlier one's build
/// (one message id for both); a message only its one subscriber holds is built for it alone; one the topic's
/// history also holds is shared.
#[test]
fn a_message_is_shared_while_others_hold_it_and_built_alone_when_only_its_subscriber_does() {
    let world = World::new(false);
    let mut alice = world.connected(Generation::G2);
    let mut bob = world.connected(Generation::G2);
    for session in [&mut alice, &mut bob] {
        send(session, "s", subscribe(&["chat.room"]), world.at(1));
        session.poll_transmit();
    }
    send(&mut bob, "p", publish("chat.room", "both"), world.at(1));
    bob.poll_transmit();
    let to_alice = shared_of(&pump(&mut alice, world.at(1))).expect("bob still holds it");
    let to_bob = shared_of(&pump(&mut bob, world.at(1))).expect("alice's build found");
    assert!(Arc::ptr_eq(&to_alice, &to_bob));

    send(
        &mut alice,
        "s",
        subscribe(&["solo", "hist.room"]),
        world.at(2),
    );
    alice.poll_transmit();
    send(&mut bob, "p", publish("solo", "one"), world.at(2));
    bob.poll_transmit();
    assert!(shared_of(&pump(&mut alice, world.at(2))).is_none());
    send(&mut bob, "p", publish("hist.room", "kept"), world.at(2));
    bob.poll_transmit();
    assert!(shared_of(&pump(&mut alice, world.at(2))).is_some());
}

#[test]
fn subscription_cap_disconnects_with_3505() {
    let world = World::new(false);
    let mut session = world.connected(Generation::G2);
    send(&mut session, "s", subscribe(&["a", "b", "c"]), world.at(1));
    send(&mut session, "s2", subscribe(&["a"]), world.at(1));
    assert_eq!(session.disconnect(), None);
    send(&mut session, "s3", subscribe(&["d"]), world.at(1));
    assert_eq!(session.disconnect(), Some(DisconnectCode::ChannelLimit));
}

#[test]
fn recovery_replays_history_after_the_cursor() {
    let world = World::new(false);
    let mut publisher = world.connected(Generation::G2);
    let mut epoch = String::new();
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        send(&mut publisher, "p", publish("hist.a", text), world.at(1));
        let OutboundBody::PublishAck(position) = &publisher.poll_transmit()[0].body else {
            panic!()
        };
        assert_eq!(position.offset, Some(i as u64 + 1));
        epoch = position.stream_epoch.clone();
    }
    let mut reader = world.connected(Generation::G2);
    let entry = Subscription {
        ephemeral: true,
        ..recovering("hist.a", &epoch, 1)
    };
    send(
        &mut reader,
        "r",
        InboundBody::Subscribe(vec![entry]),
        world.at(2),
    );
    let out = reader.poll_transmit();
    let OutboundBody::SubscribeAck(ack) = &out[0].body else {
        panic!("{out:?}")
    };
    assert_eq!(ack.recover, RecoverState::Pending);
    assert_eq!(ack.stream_epoch, epoch);
    let replayed: Vec<String> = out[1..3]
        .iter()
        .map(|o| match &o.body {
            OutboundBody::Publication(m) => {
                assert!(m[0].replay);
                assert_eq!(o.id, "r");
                m[0].id.clone()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(replayed, ["hist.a-2", "hist.a-3"]);
    let OutboundBody::RecoverComplete(done) = &out[3].body else {
        panic!("{out:?}")
    };
    assert_eq!(done.position.offset, Some(3));
    assert!(!done.truncated);

    let mut stale = world.connected(Generation::G2);
    let entry = recovering("hist.a", "12345", 1);
    send(
        &mut stale,
        "r",
        InboundBody::Subscribe(vec![entry]),
        world.at(2),
    );
    let out = stale.poll_transmit();
    let OutboundBody::RecoverComplete(done) = &out.last().unwrap().body else {
        panic!("{out:?}")
    };
    assert!(
        done.truncated,
        "another epoch cannot be recovered completely"
    );
}

#[test]
fn presence_snapshots_and_join_leave_events() {
    let world = World::new(false);
    let mut alice = world.connected(Generation::G2);
    send(&mut alice, "s", subscribe(&["room"]), world.at(1));
    let out = alice.poll_transmit();
    let OutboundBody::SubscribeAck(ack) = &out[0].body else {
        panic!()
    };
    assert_eq!(ack.presence[0].occupancy, 1);
    let mut bob = world.connected(Generation::G2);
    send(&mut bob, "s", subscribe(&["room"]), world.at(1));
    let OutboundBody::SubscribeAck(ack) = &bob.poll_transmit()[0].body else {
        panic!()
    };
    assert_eq!(ack.presence[0].occupancy, 2);
    assert!(pump(&mut bob, world.at(1)).is_empty(), "no own join");
    let events = pump(&mut alice, world.at(1));
    let OutboundBody::PresenceEvent(join) = &events[0].body else {
        panic!("{events:?}")
    };
    assert_eq!(join.action, PresenceAction::Join);
    assert_eq!(join.info.session_id, bob.session_id());
    let again = Subscription {
        recover: true,
        ..Subscription::channel("room")
    };
    send(
        &mut bob,
        "s2",
        InboundBody::Subscribe(vec![again]),
        world.at(1),
    );
    bob.poll_transmit();
    assert!(
        pump(&mut alice, world.at(1)).is_empty(),
        "re-subscribing is no leave/join"
    );
    drop(bob);
    let events = pump(&mut alice, world.at(2));
    let OutboundBody::PresenceEvent(leave) = &events[0].body else {
        panic!("{events:?}")
    };
    assert_eq!(leave.action, PresenceAction::Leave);
    send(
        &mut alice,
        "q",
        InboundBody::PresenceQuery {
            channel: "room".into(),
        },
        world.at(2),
    );
    let OutboundBody::Presence(snapshot) = &alice.poll_transmit()[0].body else {
        panic!()
    };
    assert_eq!(snapshot.occupancy, 1);
}

#[test]
fn rpc_is_answered_by_a_bus_responder() {
    let world = World::new(false);
    let mut responder = world.bus.mailbox(origin(Protocol::Internal));
    let topic = core_bus::names::rpc_topic("messageloop", ["svc.math", "double"]);
    responder.subscribe(Pattern::exact(&topic)).unwrap();
    let mut session = world.connected(Generation::G2);
    let request = rpc("svc.math", "double");
    send(&mut session, "rpc-1", request, world.at(1));
    assert!(session.poll_transmit().is_empty());
    let mut got = Vec::new();
    responder.try_recv_batch(&mut got, 10).unwrap();
    let request = &got[0].envelope;
    assert_eq!(request.payload, Bytes::from_static(b"21"));
    let mut reply = Envelope::new(
        request.reply_to.clone().unwrap(),
        Bytes::from_static(br#"{"answer":42}"#),
        responder.owner(),
    );
    reply.content_type = Some("application/json".into());
    reply.correlation_id = request.correlation_id.clone();
    world.bus.publish(reply);
    let out = pump(&mut session, world.at(2));
    let OutboundBody::RpcReply(reply) = &out[0].body else {
        panic!("{out:?}")
    };
    assert_eq!(
        (out[0].id.as_str(), reply.request_id.as_str()),
        ("rpc-1", "rpc-1")
    );
    assert!(matches!(&reply.payload.data, Some(PayloadData::Json(o)) if o["answer"] == 42));

    let request = rpc("svc.math", "double");
    send(&mut session, "rpc-2", request, world.at(3));
    assert_eq!(
        session.poll_timeout(),
        Some(world.at(3).at + Duration::from_secs(30))
    );
    session.handle_timeout(world.at(40));
    assert_first_error(&mut session, "rpc-2", "RPC_TIMEOUT");

    send(&mut session, "rpc-3", rpc("svc.none", "x"), world.at(41));
    assert_eq!(error_code(&session.poll_transmit()[0]), Some("NO_PROXY"));
}

fn backend(routes: &str) -> ProxyConfig {
    toml::from_str(&format!(
        "name = \"app\"\nendpoint = \"http://127.0.0.1:1/\"\ntimeout_ms = 5000\nroutes = [{routes}]\n"
    ))
    .unwrap()
}

/// An error a backend answers with: its own code, type and message.
fn backend_error(code: &str, error_type: &str, message: &str) -> Error {
    Error {
        code: ErrorCode::Other(code.into()),
        error_type: error_type.into(),
        message: message.into(),
        metadata: Default::default(),
    }
}

/// The backend's answer `reply` to the proxy call `id`.
fn answered(id: &str, reply: ProxyReply) -> ProxyAnswer {
    ProxyAnswer {
        id: id.into(),
        outcome: Ok(reply),
    }
}

fn rpc(channel: &str, method: &str) -> InboundBody {
    InboundBody::Rpc(RpcRequest {
        channel: channel.into(),
        method: method.into(),
        payload: Payload::text("text/plain", "21"),
        ..RpcRequest::default()
    })
}

#[test]
fn rpc_goes_to_the_first_matching_proxy_route_and_its_answer_comes_back() {
    let routes = "{ channel = \"svc.*\", method = \"get*\" }";
    let world = World::with_proxies(false, &[backend(routes)], RpcFallback::None);
    let mut session = world.connected(Generation::G2);
    send(
        &mut session,
        "rpc-1",
        rpc("svc.math.eu", "getx"),
        world.at(1),
    );
    assert!(session.poll_transmit().is_empty());
    let calls = session.take_proxy_calls();
    let ProxyRequest::Rpc(call) = &calls[0].request else {
        panic!("{calls:?}")
    };
    assert_eq!(
        (
            call.id.as_str(),
            call.channel.as_str(),
            call.method.as_str()
        ),
        ("rpc-1", "svc.math.eu", "getx")
    );
    assert_eq!(session.poll_timeout(), Some(world.at(6).at));
    let reply = ProxyReply::Rpc {
        payload: Payload::text("text/plain", "42"),
        headers: vec![("k".into(), Bytes::from_static(b"v"))],
        error: None,
    };
    let answer = answered(&calls[0].id, reply);
    session.on_proxy_answer(answer.clone(), world.at(2));
    let out = session.poll_transmit();
    let OutboundBody::RpcReply(reply) = &out[0].body else {
        panic!("{out:?}")
    };
    assert_eq!(
        (out[0].id.as_str(), reply.request_id.as_str()),
        ("rpc-1", "rpc-1")
    );
    assert_eq!(reply.payload, Payload::text("text/plain", "42"));
    // A second answer to the same call is ignored.
    session.on_proxy_answer(answer, world.at(2));
    assert!(session.poll_transmit().is_empty());

    send(&mut session, "rpc-2", rpc("svc.math", "get"), world.at(3));
    let id = session.take_proxy_calls()[0].id.clone();
    let failed = ProxyAnswer {
        id,
        outcome: Err(ProxyFailure::Failed("refused".into())),
    };
    session.on_proxy_answer(failed, world.at(3));
    assert_eq!(error_code(&session.poll_transmit()[0]), Some("PROXY_ERROR"));

    send(&mut session, "rpc-3", rpc("svc.math", "get"), world.at(3));
    assert_eq!(session.take_proxy_calls().len(), 1);
    session.handle_timeout(world.at(8));
    assert_first_error(&mut session, "rpc-3", "RPC_TIMEOUT");

    // No route, fallback "none": NO_PROXY without a call.
    send(&mut session, "rpc-4", rpc("svc.math", "put"), world.at(9));
    assert_eq!(error_code(&session.poll_transmit()[0]), Some("NO_PROXY"));
    assert!(session.take_proxy_calls().is_empty());
}

#[test]
fn connect_tokens_go_to_the_authenticate_route() {
    let routes = "{ channel = \"\", method = \"$authenticate\" }";
    let world = World::with_proxies(true, &[backend(routes)], RpcFallback::Bus);

    let mut session = world.session(Generation::G2);
    send(&mut session, "c", connect("2.0.0", "tok"), world.at(0));
    assert!(session.authenticating());
    assert!(session.poll_transmit().is_empty());
    let calls = session.take_proxy_calls();
    let ProxyRequest::Authenticate(call) = &calls[0].request else {
        panic!("{calls:?}")
    };
    assert_eq!(
        (call.token.as_str(), call.session_id.as_str()),
        ("tok", session.session_id())
    );
    let reply = ProxyReply::Authenticate {
        user_id: "bob".into(),
        error: None,
    };
    let answer = answered(&calls[0].id, reply);
    session.on_proxy_answer(answer, world.at(1));
    assert!(matches!(
        session.poll_transmit()[0].body,
        OutboundBody::Connected(_)
    ));
    assert_eq!(session.identity().map(|i| i.name.as_str()), Some("bob"));

    // The backend's own error goes out unchanged, then 3500.
    let mut refused = world.session(Generation::G2);
    send(&mut refused, "c", connect("2.0.0", "bad"), world.at(0));
    let id = refused.take_proxy_calls()[0].id.clone();
    let error = backend_error("BANNED", "custom", "go away");
    let reply = ProxyReply::Authenticate {
        user_id: String::new(),
        error: Some(error.clone()),
    };
    refused.on_proxy_answer(answered(&id, reply), world.at(1));
    let out = refused.poll_transmit();
    assert!(matches!(&out[0].body, OutboundBody::Error(e) if **e == error));
    assert_eq!(refused.disconnect(), Some(DisconnectCode::InvalidToken));

    // Frames fed while the token is with the backend (the listener reads none): 3501.
    let mut eager = world.session(Generation::G2);
    send(&mut eager, "c", connect("2.0.0", "tok"), world.at(0));
    send(&mut eager, "p", InboundBody::Ping, world.at(0));
    assert_eq!(eager.disconnect(), Some(DisconnectCode::BadRequest));

    // No answer by the deadline: AUTH_ERROR, then 3500.
    let mut slow = world.session(Generation::G2);
    send(&mut slow, "c", connect("2.0.0", "tok"), world.at(0));
    assert_eq!(slow.poll_timeout(), Some(world.at(5).at));
    slow.handle_timeout(world.at(5));
    assert_eq!(error_code(&slow.poll_transmit()[0]), Some("AUTH_ERROR"));
    assert_eq!(slow.disconnect(), Some(DisconnectCode::InvalidToken));

    // An empty token never reaches the backend: the [auth] settings decide (required here).
    let mut empty = world.session(Generation::G2);
    send(&mut empty, "c", connect("2.0.0", ""), world.at(0));
    assert!(empty.take_proxy_calls().is_empty());
    assert_eq!(error_code(&empty.poll_transmit()[0]), Some("AUTH_REQUIRED"));
}

#[test]
fn subscribe_and_publish_acl_backends_decide_after_gatewayd_and_hold_the_reading() {
    let routes = "{ channel = \"room.*\", method = \"subscribe\" }, { channel = \"room.*\", method = \"publish\" }";
    let world = World::with_proxies(false, &[backend(routes)], RpcFallback::Bus);
    let mut session = world.connected(Generation::G2);
    let mut entries = vec![
        Subscription::channel("room.a"),
        Subscription::channel("hall"),
        Subscription::channel("room.b"),
    ];
    entries[0].token = "sub-token".into();
    send(
        &mut session,
        "s",
        InboundBody::Subscribe(entries),
        world.at(1),
    );
    assert!(session.waiting_for_backend());
    assert!(session.poll_transmit().is_empty());
    let calls = session.take_proxy_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let ProxyRequest::SubscribeAcl(call) = &calls[0].request else {
        panic!("{calls:?}")
    };
    assert_eq!(
        (
            call.channel.as_str(),
            call.token.as_str(),
            call.session_id.as_str()
        ),
        ("room.a", "sub-token", session.session_id())
    );
    let refusal = backend_error("NOT_MEMBER", "app_error", "not a member");
    let answer = |id: &str, error: Option<Error>| answered(id, ProxyReply::Acl { error });
    session.on_proxy_answer(answer(&calls[1].id, Some(refusal.clone())), world.at(1));
    assert!(session.waiting_for_backend());
    session.on_proxy_answer(answer(&calls[0].id, None), world.at(1));
    assert!(!session.waiting_for_backend());
    let out = session.poll_transmit();
    assert!(
        matches!(&out[0].body, OutboundBody::Error(e) if **e == refusal),
        "{out:?}"
    );
    let OutboundBody::SubscribeAck(ack) = &out[1].body else {
        panic!("{out:?}")
    };
    let channels: Vec<&str> = ack
        .subscriptions
        .iter()
        .map(|s| s.channel.as_str())
        .collect();
    assert_eq!(channels, ["room.a", "hall"]);

    // Publish: allowed after the answer, PROXY_ERROR when the deadline passes first.
    let mut token_publish = Publish {
        channel: "room.a".into(),
        payload: Payload::text("text/plain", "hi"),
        token: "pub-token".into(),
        ..Publish::default()
    };
    send(
        &mut session,
        "p1",
        InboundBody::Publish(token_publish.clone()),
        world.at(2),
    );
    let calls = session.take_proxy_calls();
    let ProxyRequest::PublishAcl(call) = &calls[0].request else {
        panic!("{calls:?}")
    };
    assert_eq!(call.token, "pub-token");
    assert!(session.poll_transmit().is_empty());
    session.on_proxy_answer(answer(&calls[0].id, None), world.at(2));
    let out = pump(&mut session, world.at(2));
    assert!(
        out.iter()
            .any(|o| matches!(o.body, OutboundBody::PublishAck(_))),
        "{out:?}"
    );
    token_publish.token.clear();
    send(
        &mut session,
        "p2",
        InboundBody::Publish(token_publish),
        world.at(3),
    );
    assert_eq!(session.take_proxy_calls().len(), 1);
    assert_eq!(session.poll_timeout(), Some(world.at(8).at));
    session.handle_timeout(world.at(8));
    assert_first_error(&mut session, "p2", "PROXY_ERROR");
    // A channel no route names is not asked about.
    send(&mut session, "p3", publish("hall", "x"), world.at(9));
    assert!(session.take_proxy_calls().is_empty());
    assert!(!session.waiting_for_backend());
    session.poll_transmit();

    // sub_refresh asks again without a token; a refusal quietly ends the subscription.
    let channels = vec!["room.a".to_owned(), "hall".to_owned()];
    send(
        &mut session,
        "r",
        InboundBody::SubRefresh(channels),
        world.at(10),
    );
    let calls = session.take_proxy_calls();
    let ProxyRequest::SubscribeAcl(call) = &calls[0].request else {
        panic!("{calls:?}")
    };
    assert_eq!(
        (calls.len(), call.channel.as_str(), call.token.as_str()),
        (1, "room.a", "")
    );
    session.on_proxy_answer(answer(&calls[0].id, Some(refusal)), world.at(10));
    let out = session.poll_transmit();
    assert!(
        matches!(
            out[..],
            [Outbound {
                body: OutboundBody::SubRefreshAck,
                ..
            }]
        ),
        "{out:?}"
    );
    assert_eq!(session.subscription_count(), 1);
}

#[test]
fn idle_sessions_are_disconnected() {
    let world = World::new(false);
    let mut session = world.connected(Generation::G2);
    send(&mut session, "p", InboundBody::Ping, world.at(200));
    session.handle_timeout(world.at(400));
    assert_eq!(session.disconnect(), None);
    session.handle_timeout(world.at(500));
    assert_eq!(session.disconnect(), Some(DisconnectCode::IdleTimeout));
    let mut waiting = world.session(Generation::G2);
    waiting.handle_timeout(world.at(300));
    assert_eq!(waiting.disconnect(), Some(DisconnectCode::IdleTimeout));
}

#[test]
fn messages_from_other_protocols_become_publications() {
    let world = World::new(false);
    let mut session = world.connected(Generation::G1);
    send(&mut session, "s", subscribe(&["orders.**"]), world.at(1));
    session.poll_transmit();
    let origin = origin(Protocol::Stomp);
    let mut json = Envelope::new(
        Topic::from_dotted(b"orders.eu"),
        Bytes::from_static(br#"{"n":1}"#),
        origin,
    );
    json.content_type = Some("application/json".into());
    json.headers.push("priority", "high");
    world.bus.publish(json);
    world.bus.publish(Envelope::new(
        Topic::from_dotted(b"orders"),
        Bytes::from_static(b"\x00\x01"),
        origin,
    ));
    let out = pump(&mut session, world.at(2));
    let messages: Vec<_> = out
        .iter()
        .map(|o| match o.body.messages() {
            Some(m) => m[0].clone(),
            None => panic!("{:?}", o.body),
        })
        .collect();
    assert!(matches!(&messages[0].payload.data, Some(PayloadData::Json(o)) if o["n"] == 1));
    assert_eq!(messages[0].headers[0].0, "priority");
    assert_eq!(messages[1].channel, "orders");
    assert!(matches!(
        messages[1].payload.data,
        Some(PayloadData::Binary(_))
    ));
}

/// A cluster backend whose log numbers `hist.#` in epoch 77 (what `cluster.history = "jetstream"` does).
struct Log;

impl core_bus::cluster::ClusterBackend for Log {
    fn forward(&self, _envelope: &Arc<Envelope>, _groups: core_bus::cluster::Groups) {}
    fn interest(&self, _event: &core_bus::events::BusEvent) {}
    fn owns_groups(&self) -> bool {
        true
    }
    fn state(&self) -> core_bus::cluster::ClusterState {
        core_bus::cluster::ClusterState::Standalone
    }
    fn sequencing(&self, _topic: &Topic) -> core_bus::cluster::Sequencing {
        core_bus::cluster::Sequencing::Cluster { epoch: 77 }
    }
}

fn sequenced(offset: u64, text: &str) -> Envelope {
    let mut envelope = Envelope::new(
        Topic::parse("hist.a").unwrap(),
        text.to_owned(),
        origin(Protocol::Internal),
    );
    envelope.position = Some(core_bus::Position { epoch: 77, offset });
    envelope
}

fn offsets(out: &[Outbound]) -> Vec<Option<u64>> {
    out.iter()
        .filter_map(|o| o.body.messages().map(|m| m[0].position.offset))
        .collect()
}

#[test]
fn cluster_sequenced_topics_ack_without_offset_and_skip_what_a_recovering_client_has() {
    let world = World::new(false);
    world.bus.set_cluster(Box::new(Log));
    let mut publisher = world.connected(Generation::G2);
    send(&mut publisher, "p", publish("hist.a", "one"), world.at(1));
    let out = publisher.poll_transmit();
    let OutboundBody::PublishAck(position) = &out[0].body else {
        panic!("{out:?}")
    };
    assert_eq!(position.stream_epoch, "77");
    assert_eq!(position.offset, None, "the log assigns it later");

    world.bus.publish_sequenced(sequenced(3, "one"), 0);
    world.bus.publish_sequenced(sequenced(7, "two"), 0);
    // The client read up to offset 9 on a node whose copy was ahead of this one.
    let mut reader = world.connected(Generation::G2);
    let entry = Subscription {
        ephemeral: true,
        ..recovering("hist.a", "77", 9)
    };
    send(
        &mut reader,
        "r",
        InboundBody::Subscribe(vec![entry]),
        world.at(2),
    );
    let out = reader.poll_transmit();
    assert_eq!(offsets(&out), Vec::<Option<u64>>::new(), "{out:?}");
    let OutboundBody::RecoverComplete(done) = &out.last().unwrap().body else {
        panic!("{out:?}")
    };
    assert_eq!(
        done.position.offset,
        Some(9),
        "the client's cursor, not this node's top"
    );
    assert!(!done.truncated);
    // This node catches up: what the client has is not sent again, what follows is.
    world.bus.publish_sequenced(sequenced(9, "three"), 0);
    world.bus.publish_sequenced(sequenced(12, "four"), 0);
    assert_eq!(offsets(&pump(&mut reader, world.at(3))), [Some(12)]);
}
