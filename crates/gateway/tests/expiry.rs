//! Message expiry over STOMP sockets: ActiveMQ's `expires`, RabbitMQ's `expiration` and a group's `ttl_ms` drop a
//! message that waits in a `/queue/` past its time, counted as `gatewayd_drops_total{reason="expired"}`; messages
//! within their time arrive, with their headers.

mod support;

#[path = "support/stomp_client.rs"]
mod stomp_client;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stomp_client::{frames, Frame, Peer};
use support::*;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

fn start() -> Gatewayd {
    Gatewayd::start(&format!(
        "{}[[bus.groups]]\ntopics = \"ttl.#\"\nno_member = \"retain\"\noverflow = \"drop-oldest\"\n\
         max_messages = 100\nmax_bytes = 1048576\nttl_ms = 300\n",
        config_enabling(&["stomp.tcp"])
    ))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Sends `frame` with a receipt and waits for it, so the message is in its queue when this returns.
fn sent(peer: &mut Peer, frame: Frame) {
    peer.send(&frame.header("receipt", "r"));
    let receipt = peer.expect_frame(WAIT);
    assert_eq!(receipt.command, "RECEIPT", "{receipt:?}");
}

/// Bodies received until the connection has been quiet for [`QUIET`]; the first may take up to [`WAIT`].
fn bodies(peer: &mut Peer) -> Vec<String> {
    peer.messages(WAIT, QUIET)
        .into_iter()
        .map(|frame| String::from_utf8_lossy(&frame.body).into_owned())
        .collect()
}

fn expired(gateway: &Gatewayd) -> f64 {
    gateway.metric("gatewayd_drops_total", &[("reason", "expired")])
}

#[test]
fn messages_past_their_expires_or_expiration_are_dropped_from_a_queue() {
    let gateway = start();
    let address = gateway.listener("stomp.tcp");
    let mut producer = Peer::connect(address);
    let past = (now_ms() - 1_000).to_string();
    let later = (now_ms() + 60_000).to_string();
    sent(
        &mut producer,
        frames::send_string("/queue/jobs", "stale").header("expires", &past),
    );
    sent(
        &mut producer,
        frames::send_string("/queue/jobs", "short").header("expiration", "20"),
    );
    sent(
        &mut producer,
        frames::send_string("/queue/jobs", "fresh").header("expires", &later),
    );
    sent(
        &mut producer,
        frames::send_string("/queue/jobs", "never").header("expires", "0"),
    );
    // Longer than the 20 ms of "short": it expires while nobody consumes the queue.
    std::thread::sleep(Duration::from_millis(60));
    let mut consumer = Peer::connect(address);
    consumer.send(&frames::subscribe("/queue/jobs", "auto", "c"));
    assert_eq!(bodies(&mut consumer), ["fresh", "never"]);
    assert_eq!(expired(&gateway), 2.0);
}

#[test]
fn a_group_ttl_drops_what_waited_longer_and_delivers_what_did_not() {
    let gateway = start();
    let address = gateway.listener("stomp.tcp");
    let mut producer = Peer::connect(address);
    sent(&mut producer, frames::send_string("/queue/ttl.a", "old"));
    std::thread::sleep(Duration::from_millis(400));
    let mut consumer = Peer::connect(address);
    consumer.send(&frames::subscribe("/queue/ttl.a", "auto", "c").header("receipt", "s"));
    assert_eq!(consumer.expect_frame(WAIT).command, "RECEIPT");
    sent(&mut producer, frames::send_string("/queue/ttl.a", "new"));
    let message = consumer.expect_frame(WAIT);
    assert_eq!(message.command, "MESSAGE", "{message:?}");
    assert_eq!(message.body, b"new");
    assert_eq!(expired(&gateway), 1.0);
}
