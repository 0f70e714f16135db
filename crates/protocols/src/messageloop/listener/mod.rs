//! The MessageLoop listeners: WebSocket (`messageloop.ws`) and gRPC (`messageloop.grpc`), both thin IO glue
//! around one [`Session`](super::session::Session) per connection or stream. They share the authenticator,
//! the presence table and the session settings.

mod grpc;
mod ws;

use std::sync::Arc;

use anyhow::Context as _;

use super::config::Config;
use super::message::{Outbound, OutboundBody};
use super::presence::PresenceTable;
use super::session::{uuid4, SessionContext, SessionSettings};
use crate::auth::Authenticator;
use crate::{RunningListener, Services};

/// Starts the listeners `config` enables.
pub async fn start(config: &Config, services: &Services) -> anyhow::Result<Vec<RunningListener>> {
    let authenticator =
        Arc::new(Authenticator::new(config.auth.clone()).context("messageloop.auth")?);
    let context = SessionContext {
        bus: services.bus.clone(),
        authenticator,
        presence: PresenceTable::shared(services.bus.clone()),
        settings: Arc::new(SessionSettings {
            max_subscriptions: config.limits.max_subscriptions_per_connection,
            idle_timeout: config.heartbeat.idle_timeout(),
            rpc_timeout: config.rpc_timeout(),
            epoch: uuid4(),
        }),
    };
    let mut running = Vec::new();
    if config.ws.enabled {
        running.push(ws::start(config, services, context.clone()).await?);
    }
    if config.grpc.enabled {
        running.push(grpc::start(config, services, context).await?);
    }
    Ok(running)
}

/// Counts and logs an envelope left out because its encoding is over `limits.max_message_size`, naming the
/// receiving listener and, for deliveries, the channels and the publisher's message ids.
fn drop_too_large(listener: &str, outbound: &Outbound, size: usize, max: usize) {
    core_bus::metrics::record_drop(
        core_bus::metrics::DropReason::TooLarge,
        core_bus::Protocol::MessageLoop,
    );
    let channels: Vec<&str> = match &outbound.body {
        OutboundBody::Publication(messages) => {
            messages.iter().map(|m| m.channel.as_str()).collect()
        }
        _ => Vec::new(),
    };
    tracing::debug!(
        listener,
        size,
        max,
        ?channels,
        "messageloop: envelope over max_message_size not delivered"
    );
}
