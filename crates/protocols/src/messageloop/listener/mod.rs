//! The MessageLoop listeners: WebSocket (`messageloop.ws`) and gRPC (`messageloop.grpc`), both thin IO glue
//! around one [`Session`](super::session::Session) per connection or stream. They share the presence table and
//! the stream epoch.
//!
//! Each listener keeps its [`Settings`] (authenticator, session settings, limits, generation) in an `ArcSwap`
//! that a connection (WebSocket) or stream (gRPC) reads when it starts; reload swaps in settings built from the
//! new section, keeping the presence table and the stream epoch. Open sessions keep theirs.

mod grpc;
mod ws;

use std::sync::Arc;

use anyhow::Context as _;
use core_bus::Bus;

use super::config::{Config, Limits};
use super::generation::GenerationSetting;
use super::message::{Outbound, OutboundBody};
use super::presence::PresenceTable;
use super::proxy::Proxies;
use super::session::{uuid4, SessionContext, SessionSettings};
use crate::accept::Deadlines;
use crate::auth::Authenticator;
use crate::{RunningListener, Services};

/// Starts the listeners `config` enables.
pub async fn start(config: &Config, services: &Services) -> anyhow::Result<Vec<RunningListener>> {
    let settings = Settings::new(
        config,
        services.bus.clone(),
        PresenceTable::shared(services.bus.clone()),
        uuid4(),
    )?;
    let mut running = Vec::new();
    if config.ws.enabled {
        running.push(ws::start(config, services, settings.reloaded(config)?).await?);
    }
    if config.grpc.enabled {
        running.push(grpc::start(config, services, settings).await?);
    }
    Ok(running)
}

/// What a connection or stream takes from the config when it starts.
struct Settings {
    context: SessionContext,
    /// The backends the sessions' proxy calls go to.
    proxies: Arc<Proxies>,
    generation: GenerationSetting,
    limits: Limits,
    deadlines: Deadlines,
}

impl Settings {
    fn new(
        config: &Config,
        bus: Bus,
        presence: PresenceTable,
        epoch: String,
    ) -> anyhow::Result<Settings> {
        config.validate().map_err(anyhow::Error::msg)?;
        let authenticator = Arc::new(
            Authenticator::new(config.auth.clone())
                .context("messageloop.auth")?
                .for_protocol(core_bus::Protocol::MessageLoop),
        );
        let proxies = Arc::new(Proxies::new(&config.proxy).map_err(anyhow::Error::msg)?);
        Ok(Settings {
            context: SessionContext {
                bus,
                authenticator,
                presence,
                router: proxies.router(),
                hooks: proxies.hooks(),
                settings: Arc::new(SessionSettings {
                    max_subscriptions: config.limits.max_subscriptions_per_connection,
                    idle_timeout: config.heartbeat.idle_timeout(),
                    rpc_timeout: config.rpc_timeout(),
                    rpc_fallback: config.rpc_fallback,
                    epoch,
                }),
            },
            proxies,
            generation: config.generation_setting(),
            limits: config.limits,
            deadlines: config.deadlines,
        })
    }

    /// The settings `config` gives, sharing the bus, presence table and stream epoch of these.
    fn reloaded(&self, config: &Config) -> anyhow::Result<Settings> {
        Settings::new(
            config,
            self.context.bus.clone(),
            self.context.presence.clone(),
            self.context.settings.epoch.clone(),
        )
    }
}

/// Reads a new `[messageloop]` section and builds the settings it gives from `current`.
fn reload_settings(
    current: &Settings,
    section: &toml::Value,
) -> Result<(Config, Settings), String> {
    let next: Config = section
        .clone()
        .try_into()
        .map_err(|error| format!("messageloop: {error}"))?;
    let settings = current
        .reloaded(&next)
        .map_err(|error| format!("{error:#}"))?;
    Ok((next, settings))
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
