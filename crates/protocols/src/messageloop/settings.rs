//! The `[messageloop]` section as connections and streams use it: [`Settings`] (authenticator, session
//! settings, proxies, limits, generation), built once per start or reload, keeping the bus, the presence table
//! and the stream epoch of the running listeners.

use std::sync::Arc;

use core_bus::Bus;

use super::bridge::deliveries::Deliveries;
use super::config::{Config, Limits};
use super::generation::GenerationSetting;
use super::presence::PresenceTable;
use super::proxy::Proxies;
use super::session::{SessionContext, SessionSettings};
use crate::accept::Deadlines;
use crate::auth::Authenticator;
use crate::config::ConfigError;

/// What a connection or stream takes from the config when it starts.
pub(super) struct Settings {
    pub context: SessionContext,
    /// The backends the sessions' proxy calls go to.
    pub proxies: Arc<Proxies>,
    pub generation: GenerationSetting,
    pub limits: Limits,
    pub deadlines: Deadlines,
}

impl Settings {
    pub fn new(
        config: &Config,
        bus: Bus,
        presence: PresenceTable,
        epoch: String,
    ) -> Result<Settings, ConfigError> {
        config.validate()?;
        let authenticator = Authenticator::new(config.auth.clone())
            .map_err(|error| ConfigError::from(error).within("messageloop"))?
            .for_protocol(core_bus::Protocol::MessageLoop);
        let proxies = Proxies::new(&config.proxy)
            .map_err(|error| ConfigError::new("messageloop.proxy", error))?;
        let proxies = Arc::new(proxies);
        Ok(Settings {
            context: SessionContext {
                bus,
                authenticator: Arc::new(authenticator),
                presence,
                router: proxies.router(),
                hooks: proxies.hooks(),
                deliveries: Deliveries::default(),
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
    pub fn reloaded(&self, config: &Config) -> Result<Settings, ConfigError> {
        Settings::new(
            config,
            self.context.bus.clone(),
            self.context.presence.clone(),
            self.context.settings.epoch.clone(),
        )
    }
}
