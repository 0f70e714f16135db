//! The MessageLoop listeners: WebSocket (`messageloop.ws`) and gRPC (`messageloop.grpc`). They bind, accept
//! (TLS, upgrade or HTTP/2) and hand each connection or stream to its session loop in `driver`. They
//! share the presence table and the stream epoch.
//!
//! Each listener keeps its [`Settings`] in an `ArcSwap` that a connection (WebSocket) or stream (gRPC) reads when
//! it starts; [`super::reload`] swaps them.

pub(super) mod grpc;
mod ws;

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::config::Config;
use super::presence::PresenceTable;
use super::proxy::responder::Responder;
use super::reload::Reloader;
use super::session::uuid4;
use super::settings::Settings;
use crate::{Services, Started};

/// Starts the listeners `config` enables and the proxy responder (which runs with or without them).
pub async fn start(config: &Config, services: &Services) -> anyhow::Result<Started<Config>> {
    let settings = Settings::new(
        config,
        services.bus.clone(),
        PresenceTable::shared(services.bus.clone()),
        uuid4(),
    )?;
    let mut listeners = Vec::new();
    let mut swaps = Vec::new();
    if config.ws.enabled {
        let swap = Arc::new(ArcSwap::from_pointee(settings.reloaded(config)?));
        listeners.push(ws::start(config, services, swap.clone()).await?);
        swaps.push((ws::NAME, swap));
    }
    if config.grpc.enabled {
        let swap = Arc::new(ArcSwap::from_pointee(settings));
        listeners.push(grpc::start(config, services, swap.clone()).await?);
        swaps.push((grpc::NAME, swap));
    }
    let responder = Responder::start(
        &config.proxy,
        services.bus.clone(),
        services.shutdown.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    Ok(Started {
        listeners,
        reload: Some(Box::new(Reloader::new(config, swaps, responder))),
    })
}
