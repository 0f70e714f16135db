//! The Loom UDP endpoint: one quinn endpoint offering `loom/1`, `loom` and `h3`, one task per connection
//! dispatched on the negotiated ALPN, every connection registered in the connection registry.
//!
//! Each new connection and stream takes the [`Settings`] in effect at that moment ([`super::reload`] swaps them).

mod h3;
mod quic;

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use core_bus::Protocol;
use quinn::crypto::rustls::{HandshakeData, QuicServerConfig};
use quinn::{IdleTimeout, VarInt};
use rustls::pki_types::CertificateDer;
use tokio_util::task::TaskTracker;

use super::config::{Config, QuicConfig};
use super::driver::{Conn, Shared};
use super::reject::{ALPN, ALPN_H3, ALPN_LEGACY, QUIC_REJECTED};
use super::reload;
use super::session::MsgIds;
use super::settings::Settings;
use crate::accept::{self, Run};
use crate::{tls, RunningListener, Services, Started};

/// Listener name in the admin API.
pub const LISTENER: &str = "loom.quic";

/// Unidirectional streams a client may have open at once. `loom/1` uses none; an HTTP/3 client opens its control
/// stream and its two QPACK streams, and may add a grease stream. quinn keeps a map entry per stream a peer may
/// open from the start, so its default of 100 costs every connection about 3 KiB for nothing.
const PEER_UNI_STREAMS: u32 = 8;

/// How long shutdown waits for closed connections to be acknowledged by their peers.
const DRAIN: Duration = Duration::from_secs(2);

/// Binds the Loom endpoint if `config.enabled`.
pub async fn start(config: &Config, services: &Services) -> anyhow::Result<Started<Config>> {
    if !config.enabled {
        return Ok(Started::nothing());
    }
    let tls = tls::server_config(&config.tls, &[ALPN, ALPN_LEGACY, ALPN_H3]).context("loom.tls")?;
    let crypto = QuicServerConfig::try_from(tls).context("loom.tls: no TLS 1.3 for QUIC")?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport(&config.quic)?));
    let endpoint = quinn::Endpoint::server(server, config.address)
        .with_context(|| format!("loom.address {}", config.address))?;
    let local_addr = endpoint.local_addr()?;
    let shared = Arc::new(Shared {
        services: services.clone(),
        ids: Arc::new(MsgIds::default()),
        relay: Arc::default(),
        settings: ArcSwap::from_pointee(Settings::new(config)?),
    });
    let task = tokio::spawn(accept(endpoint, shared.clone()));
    Ok(Started {
        listeners: vec![RunningListener {
            name: LISTENER.to_owned(),
            protocol: Protocol::Loom,
            transport: "quic",
            local_addr,
            task,
        }],
        reload: Some(Box::new(reload::reloader(shared, config))),
    })
}

fn transport(quic: &QuicConfig) -> anyhow::Result<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(
        (quic.keep_alive_secs > 0).then(|| Duration::from_secs(quic.keep_alive_secs)),
    );
    let idle = match quic.idle_timeout_secs {
        0 => None,
        secs => Some(
            IdleTimeout::try_from(Duration::from_secs(secs))
                .context("loom.quic.idle_timeout_secs")?,
        ),
    };
    transport.max_idle_timeout(idle);
    transport.max_concurrent_bidi_streams(VarInt::from_u32(quic.max_concurrent_bidi_streams));
    transport.max_concurrent_uni_streams(VarInt::from_u32(PEER_UNI_STREAMS));
    transport.stream_receive_window(VarInt::from_u32(quic.stream_receive_window));
    transport.receive_window(VarInt::from_u32(quic.receive_window));
    Ok(transport)
}

async fn accept(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    let shutdown = shared.services.shutdown.clone();
    // Counts the connection tasks without keeping an entry per task (a join set's is 56 bytes).
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let peer = incoming.remote_address();
                let max_connections = shared.settings.load().max_connections;
                match shared.services.connections.register(Protocol::Loom, LISTENER, peer, max_connections) {
                    Ok(guard) => {
                        let handshake = handshake(incoming, Conn::new(guard), shared.clone());
                        connections.spawn(accept::upgrade_then_run(handshake));
                    }
                    Err(full) => {
                        tracing::warn!(%peer, %full, "loom connection refused");
                        incoming.refuse();
                    }
                }
            }
        }
    }
    connections.close();
    connections.wait().await;
    let _ = tokio::time::timeout(DRAIN, endpoint.wait_idle()).await;
}

/// The QUIC handshake under the pre-auth deadline, then the serving loop of the protocol its ALPN names, to run
/// as the connection's task ([`accept::upgrade_then_run`]); `None` when the handshake failed or named no protocol.
async fn handshake(incoming: quinn::Incoming, mut conn: Conn, shared: Arc<Shared>) -> Option<Run> {
    let shutdown = &shared.services.shutdown;
    let deadline = tokio::time::Instant::now() + shared.settings.load().deadlines.pre_auth();
    let handshake = Box::pin(accept::handshake(
        LISTENER,
        incoming.into_future(),
        deadline,
        shutdown,
    ));
    let quic = match handshake.await {
        Ok(quic) => quic,
        Err(error) => {
            tracing::debug!(%error, "loom handshake");
            return None;
        }
    };
    conn.certificate = quic
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().map(tls::certificate_names));
    let alpn = quic
        .handshake_data()
        .and_then(|data| data.downcast::<HandshakeData>().ok())
        .and_then(|data| data.protocol);
    match alpn.as_deref() {
        Some(ALPN_H3) => Some(Box::pin(h3::serve(quic, Arc::new(conn), shared))),
        Some(ALPN | ALPN_LEGACY) => Some(Box::pin(quic::serve(quic, Arc::new(conn), shared))),
        _ => {
            quic.close(VarInt::from_u32(QUIC_REJECTED), b"no ALPN");
            None
        }
    }
}
