//! Ownership and ACLs on every name a client can touch, over real sockets: STOMP reply queues are unguessable
//! and checked against the publish ACL, durable subscriptions belong to the identity that made them, and
//! MessageLoop RPC and presence requests are checked against the identity's ACL (issue 15, defects 3, 4, 5).

mod support;

#[path = "support/messageloop_client.rs"]
mod messageloop_client;
#[path = "support/stomp_client.rs"]
mod stomp_client;

use std::time::Duration;

use messageloop_client::Ws;
use serde_json::json;
use stomp_client::{frames, Frame, Peer, Received};
use support::*;

const WAIT: Duration = Duration::from_secs(5);
/// How long a test watches for something that must not arrive.
const QUIET: Duration = Duration::from_millis(300);

/// STOMP logins (login = passcode) and their ACLs, and one MessageLoop token.
const AUTH: &str = r#"
[stomp.auth]
required = true
[[stomp.auth.tokens]]
login = "alice"
token = "alice"
identity = { name = "alice", publish = ["orders.>"], subscribe = ["orders.#"] }
[[stomp.auth.tokens]]
login = "bob"
token = "bob"
identity = { name = "bob", publish = ["orders.>"], subscribe = ["orders.#"] }
[[stomp.auth.tokens]]
login = "carol"
token = "carol"
identity = { name = "carol", publish = ["orders.>", "$inbox"], subscribe = ["orders.#"] }
[[stomp.auth.tokens]]
login = "root"
token = "root"
identity = { name = "root" }
[stomp.tcp]
enabled = true
address = "127.0.0.1:0"

[messageloop.auth]
required = true
[[messageloop.auth.tokens]]
token = "ml-orders"
identity = { name = "ml", publish = ["orders.>"], subscribe = ["orders.>"] }
[messageloop.ws]
enabled = true
address = "127.0.0.1:0"
"#;

fn start() -> Gatewayd {
    Gatewayd::start(&format!("{}{AUTH}", base_config()))
}

fn login(gateway: &Gatewayd, name: &str, client_id: Option<&str>) -> Peer {
    let mut peer = Peer::open(gateway.listener("stomp.tcp"));
    let mut connect = frames::connect(name, name).header("accept-version", "1.2");
    if let Some(id) = client_id {
        connect = connect.header("client-id", id);
    }
    peer.send(&connect);
    let connected = peer.expect_frame(WAIT);
    assert_eq!(connected.command, "CONNECTED", "{connected:?}");
    peer
}

fn expect(peer: &mut Peer, command: &str) -> Frame {
    let frame = peer.expect_frame(WAIT);
    assert_eq!(frame.command, command, "{frame:?}");
    frame
}

/// Sends `frame` with a receipt and waits for it.
fn confirmed(peer: &mut Peer, frame: Frame) {
    peer.send(&frame.header("receipt", "ok"));
    assert_eq!(expect(peer, "RECEIPT").get("receipt-id"), Some("ok"));
}

/// `frame` is answered with ERROR `message`, then the connection closes.
fn refused(peer: &mut Peer, frame: &Frame, message: &str) {
    peer.send(frame);
    let error = expect(peer, "ERROR");
    assert_eq!(error.get("message"), Some(message), "{error:?}");
    peer.expect_closed(WAIT);
}

/// Defect 3: `/reply-queue/` addresses hold 128 random bits, a guessed one reaches nobody, and a SEND to a
/// real one needs the publish ACL (`$inbox`); `/temp-queue/` with an empty name is a temp queue too.
#[test]
fn reply_queues_are_unguessable_and_need_the_publish_acl() {
    let gateway = start();
    let mut responder = login(&gateway, "bob", None);
    confirmed(
        &mut responder,
        frames::subscribe("/topic/orders.req", "auto", "req"),
    );
    let mut requester = login(&gateway, "alice", None);
    confirmed(
        &mut requester,
        frames::send_string("/topic/orders.req", "q1").header("reply-to", "/temp-queue/r"),
    );
    let request = expect(&mut responder, "MESSAGE");
    let address = request.get("reply-to").expect("reply-to").to_owned();
    let opaque = address
        .strip_prefix("/reply-queue/")
        .expect("a reply queue");
    let (connection, name) = opaque.split_once('.').expect("<connection>.<name>");
    assert!(
        name.len() >= 32 && name.bytes().all(|b| b.is_ascii_hexdigit()),
        "128 random bits, not the client's name: {address}"
    );

    // The name the client chose, as the old sequential scheme built it, reaches nobody.
    let mut carol = login(&gateway, "carol", None);
    confirmed(
        &mut carol,
        frames::send_string(&format!("/reply-queue/{connection}.r"), "guessed"),
    );
    // Without `$inbox` in the publish ACL a reply is refused.
    refused(
        &mut responder,
        &frames::send_string(&address, "a1"),
        "Access refused",
    );
    confirmed(&mut carol, frames::send_string(&address, "a2"));
    let reply = expect(&mut requester, "MESSAGE");
    assert_eq!(
        reply.body, b"a2",
        "the guessed address delivered nothing first"
    );
    assert_eq!(reply.get("destination"), Some("/temp-queue/r"));

    // Only the owner consumes its inbox, even with every right.
    let mut root = login(&gateway, "root", None);
    refused(
        &mut root,
        &frames::subscribe(&format!("/queue/$inbox.{opaque}"), "auto", "steal"),
        "Invalid destination",
    );

    // `reply-to: /temp-queue/` (empty name) gets a temp queue like a named one.
    let mut responder = login(&gateway, "bob", None);
    confirmed(
        &mut responder,
        frames::subscribe("/topic/orders.req", "auto", "req"),
    );
    confirmed(
        &mut requester,
        frames::send_string("/topic/orders.req", "q2").header("reply-to", "/temp-queue/"),
    );
    let request = expect(&mut responder, "MESSAGE");
    let address = request.get("reply-to").expect("reply-to");
    assert!(address.starts_with("/reply-queue/"), "{address}");
    confirmed(&mut carol, frames::send_string(address, "a3"));
    let reply = expect(&mut requester, "MESSAGE");
    assert_eq!(reply.body, b"a3");
    assert_eq!(reply.get("destination"), Some("/temp-queue/"));
}

/// Defect 4: a durable subscription belongs to the identity that made it. Another identity naming the same
/// `client-id` + name (ActiveMQ) or `id` + topic (RabbitMQ) can neither join nor delete it, the backing
/// queue cannot be named directly, and the subscribe ACL applies.
#[test]
fn durable_subscriptions_belong_to_their_identity() {
    let gateway = start();
    let queue = "$durable.app.audit";
    let named = frames::subscribe("/topic/orders.*", "client", "a")
        .header("activemq.subscriptionName", "audit");
    let mut alice = login(&gateway, "alice", Some("app"));
    confirmed(&mut alice, named.clone());
    alice.shutdown();
    wait_members(&gateway, queue, 0);
    let mut sender = login(&gateway, "bob", None);
    confirmed(
        &mut sender,
        frames::send_string("/topic/orders.one", "kept"),
    );

    let mut bob = login(&gateway, "bob", Some("app"));
    refused(
        &mut bob,
        &Frame::new("UNSUBSCRIBE")
            .header("id", "a")
            .header("activemq.subscriptionName", "audit")
            .header("destination", "/topic/orders.*"),
        "Access refused",
    );
    let mut bob = login(&gateway, "bob", Some("app"));
    refused(&mut bob, &named, "Access refused");
    let mut root = login(&gateway, "root", None);
    refused(
        &mut root,
        &frames::subscribe(&format!("/queue/{queue}"), "auto", "steal"),
        "Invalid destination",
    );
    let mut root = login(&gateway, "root", None);
    refused(
        &mut root,
        &frames::send_string(&format!("/queue/{queue}"), "forged"),
        "Invalid destination",
    );

    let mut alice = login(&gateway, "alice", Some("app"));
    alice.send(&named);
    let kept = expect(&mut alice, "MESSAGE");
    assert_eq!(kept.body, b"kept");
    assert_eq!(kept.get("destination"), Some("/topic/orders.one"));

    // The RabbitMQ form: the same `id` and topic from another identity.
    let durable = frames::subscribe("/topic/orders.#", "auto", "d1").header("durable", "true");
    confirmed(&mut alice, durable.clone());
    let mut bob = login(&gateway, "bob", None);
    refused(&mut bob, &durable, "Access refused");
    // The subscribe ACL applies to durable subscriptions.
    let mut bob = login(&gateway, "bob", None);
    refused(
        &mut bob,
        &frames::subscribe("/topic/invoices", "auto", "d2").header("durable", "true"),
        "Access refused",
    );
    confirmed(
        &mut alice,
        Frame::new("UNSUBSCRIBE")
            .header("id", "d1")
            .header("destination", "/topic/orders.#")
            .header("durable", "true"),
    );
}

/// Defect 5: `rpc_request` needs publish on the channel (or the exact `$rpc.messageloop.<channel>.<method>`),
/// presence needs subscribe: `PERMISSION_DENIED` otherwise, and the session goes on.
#[test]
fn messageloop_rpc_and_presence_are_checked_against_the_acl() {
    let gateway = start();
    let mut ws = Ws::connect(gateway.listener("messageloop.ws"), &[]);
    ws.handshake("2.0.0", "ml-orders");
    let mut responder = login(&gateway, "root", None);
    confirmed(
        &mut responder,
        frames::subscribe("/topic/$rpc.messageloop.secret.get", "auto", "rpc"),
    );

    ws.send(json!({"id": "r1", "rpc_request": {"channel": "secret", "method": "get"}}));
    let denied = ws.recv_kind("error");
    assert_eq!(denied["id"], "r1");
    assert_eq!(denied["error"]["code"], "PERMISSION_DENIED", "{denied}");

    ws.send(json!({"id": "p1", "presence_query": {"channel": "secret"}}));
    let denied = ws.recv_kind("error");
    assert_eq!(denied["id"], "p1");
    assert_eq!(denied["error"]["code"], "PERMISSION_DENIED", "{denied}");

    // Allowed: the request reaches the bus (nobody answers `orders.eu`: NO_PROXY), and the denied one
    // never reached the responder.
    ws.send(json!({"id": "r2", "rpc_request": {"channel": "orders.eu", "method": "get"}}));
    let unanswered = ws.recv_kind("error");
    assert_eq!(unanswered["id"], "r2");
    assert_eq!(unanswered["error"]["code"], "NO_PROXY", "{unanswered}");
    assert_eq!(responder.receive(QUIET), Received::Nothing);
}
