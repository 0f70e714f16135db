//! MQTT: the packet decoder before CONNECT and at both protocol levels, and a whole session (CONNECT, then
//! anything) fed the input split in chunks: never a panic, whatever the bytes.
#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use core_bus::config::BusConfig;
use core_bus::{Bus, ConnectionId, Origin, Protocol};
use gatewayd_fuzz::{chunked, pick};
use libfuzzer_sys::fuzz_target;
use protocols::auth::Authenticator;
use protocols::mqtt::codec::{decode, Version};
use protocols::mqtt::retained::Retained;
use protocols::mqtt::store::SessionStore;
use protocols::mqtt::{Flow, Session, Settings, Shared};
use tokio_util::sync::CancellationToken;

fuzz_target!(|data: &[u8]| {
    let (level, rest) = pick(data, 3);
    let version = match level {
        0 => None,
        1 => Some(Version::V311),
        _ => Some(Version::V5),
    };
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(_)) = decode(&mut buf, version, 4096) {}

    let shared = Shared {
        bus: Bus::new(BusConfig::default()),
        retained: Retained::new(16, 1 << 16),
        sessions: SessionStore::new(16),
    };
    let settings = Settings {
        auth: Authenticator::open(),
        max_packet_size: 4096,
        receive_maximum: 4,
        topic_alias_maximum: 4,
        max_keep_alive_secs: 60,
        max_session_expiry_secs: 60,
        max_subscriptions: 16,
    };
    let origin = Origin {
        protocol: Protocol::Mqtt,
        connection: ConnectionId(1),
    };
    let mut session = Session::new(Arc::new(settings), shared, origin, CancellationToken::new());
    let mut input = BytesMut::new();
    for chunk in chunked(rest) {
        input.extend_from_slice(chunk);
        let flow = session.handle_input(&mut input);
        session.poll_transmit().clear();
        while session.take_backpressure().is_some() {}
        if flow == Flow::Close {
            break;
        }
    }
    session.finish();
});
