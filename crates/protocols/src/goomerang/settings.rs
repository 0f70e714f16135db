//! The `[goomerang]` section as connections use it: [`Settings`], built once per start or reload and taken by
//! each connection when it is accepted.

use std::sync::Arc;
use std::time::Duration;

use core_bus::Protocol;

use super::config::Config;
use super::listener::PATHS;
use super::session::SessionSettings;
use crate::accept::Deadlines;
use crate::auth::Authenticator;
use crate::config::ConfigError;
use crate::ws::WsAcceptOptions;

/// What a connection takes when it is accepted.
pub(super) struct Settings {
    /// Checks the upgrade's token or client certificate ([`Authenticator::authenticate_upgrade`]).
    pub auth: Arc<Authenticator>,
    pub session: SessionSettings,
    pub ws: WsAcceptOptions,
    pub max_connections: usize,
    pub deadlines: Deadlines,
    /// `None`: no pings and no idle timeout.
    pub idle_timeout: Option<Duration>,
}

impl Settings {
    /// Checks `config` and builds the settings from it.
    pub fn new(config: &Config) -> Result<Settings, ConfigError> {
        config.validate()?;
        let auth = Authenticator::new(config.auth.clone())
            .map_err(|error| ConfigError::from(error).within("goomerang"))?
            .for_protocol(Protocol::Goomerang);
        Ok(Settings {
            auth: Arc::new(auth),
            session: SessionSettings {
                limits: config.frame_limits.clone(),
                wrapper_kind: config.wrapper_kind.clone(),
                max_subscriptions: config.limits.max_subscriptions_per_connection,
                send_routes: config.send_routes()?,
                foreign_kinds: config.foreign_kinds()?,
            },
            ws: WsAcceptOptions {
                paths: PATHS.iter().map(|path| (*path).to_owned()).collect(),
                max_message_bytes: config.frame_limits.max_message_size,
                ..WsAcceptOptions::default()
            },
            max_connections: config.limits.max_connections,
            deadlines: config.deadlines,
            idle_timeout: (config.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(config.idle_timeout_secs)),
        })
    }
}
