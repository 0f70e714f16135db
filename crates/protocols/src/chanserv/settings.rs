//! The `[chanserv]` section as connections use it: [`Settings`], built once per start or reload on the node's
//! AstraNet host id and port counter, and taken by each connection when it is accepted.

use std::sync::Arc;

use core_bus::Protocol;

use super::astranet::{HostId, LinkConfig, PortCounter};
use super::config::Config;
use super::session::SessionConfig;
use crate::accept::Deadlines;
use crate::auth::{Authenticator, Identity};
use crate::config::ConfigError;

/// What a connection takes when it is accepted.
pub(super) struct Settings {
    pub link: LinkConfig,
    pub session: SessionConfig,
    pub identity: Identity,
    pub max_connections: usize,
    pub deadlines: Deadlines,
}

impl Settings {
    /// Checks `config` and builds the settings from it, on the node's `host` and port counter.
    pub fn new(config: &Config, host: HostId, ports: PortCounter) -> Result<Settings, ConfigError> {
        config.validate()?;
        let auth = Authenticator::new(config.auth.clone())
            .map_err(|error| ConfigError::from(error).within("chanserv"))?
            .for_protocol(Protocol::Chanserv);
        let auth = Arc::new(auth);
        let mut link = LinkConfig::new(host);
        link.service = config.service()?;
        link.ports = ports;
        link.handshake_timeout = config.deadlines.pre_auth();
        link.stall_timeout = config.deadlines.idle_frame();
        Ok(Settings {
            link,
            session: SessionConfig {
                compression: config.compression.into(),
                frame_limit: config.max_frame_bytes,
                max_sources_per_request: config.max_sources_per_request,
                max_subscriptions: config.limits.max_subscriptions_per_connection,
                auth: auth.clone(),
                timeouts: config.timeouts.into(),
            },
            identity: auth.anonymous().clone(),
            max_connections: config.limits.max_connections,
            deadlines: config.deadlines,
        })
    }
}
