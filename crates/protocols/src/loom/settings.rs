//! The `[loom]` section as streams use it: [`Settings`], built once per start or reload and taken by each stream
//! when it opens.

use std::time::Duration;

use core_bus::{Protocol, Topic};

use super::config::Config;
use super::limits::Limits;
use crate::accept::Deadlines;
use crate::auth::Authenticator;
use crate::config::ConfigError;

/// The reloadable part of the `[loom]` section, as streams use it.
pub(super) struct Settings {
    pub auth: Authenticator,
    pub limits: Limits,
    pub max_connections: usize,
    pub max_consumers: usize,
    pub topic_prefix: Option<Topic>,
    pub reject_delay: Duration,
    pub deadlines: Deadlines,
}

impl Settings {
    /// Checks `config` and builds the settings from it.
    pub fn new(config: &Config) -> Result<Settings, ConfigError> {
        config.validate()?;
        Ok(Settings {
            auth: Authenticator::new(config.auth.clone())
                .map_err(|error| ConfigError::from(error).within("loom"))?
                .for_protocol(Protocol::Loom),
            limits: config.limits.codec(),
            max_connections: config.limits.max_connections,
            max_consumers: config.limits.max_subscriptions_per_connection,
            topic_prefix: config.topic_prefix.clone(),
            reject_delay: config.reject_delay(),
            deadlines: config.deadlines,
        })
    }
}
