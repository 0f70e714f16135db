//! The `[mqtt]` section as connections use it: [`Live`], one per listener, built once per start or reload and
//! read on every accept.

use std::sync::Arc;

use super::config::Config;
use super::session::Settings;
use crate::accept::Deadlines;
use crate::auth::Authenticator;
use crate::config::ConfigError;

/// The MQTT listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
    Ws,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Tcp, Transport::Tls, Transport::Ws];

    /// The listener's name in `/api/listeners` and the connection registry.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "mqtt.tcp",
            Transport::Tls => "mqtt.tls",
            Transport::Ws => "mqtt.ws",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
        }
    }

    pub fn enabled(self, config: &Config) -> bool {
        match self {
            Transport::Tcp => config.tcp.enabled,
            Transport::Tls => config.tls.enabled,
            Transport::Ws => config.ws.enabled,
        }
    }

    fn limits(self, config: &Config) -> crate::limits::ListenerLimits {
        match self {
            Transport::Tcp => config.tcp.limits,
            Transport::Tls => config.tls.limits,
            Transport::Ws => config.ws.limits,
        }
    }
}

/// What one listener's new connections take.
pub struct Live {
    pub settings: Arc<Settings>,
    pub deadlines: Deadlines,
    pub write_batch: usize,
    pub max_connections: usize,
}

impl Live {
    pub fn new(config: &Config, transport: Transport) -> Result<Live, ConfigError> {
        config.validate()?;
        let auth = Arc::new(
            Authenticator::new(config.auth.clone())
                .map_err(|error| ConfigError::from(error).within("mqtt"))?
                .for_protocol(core_bus::Protocol::Mqtt),
        );
        let limits = transport.limits(config);
        Ok(Live {
            settings: Arc::new(Settings {
                auth,
                max_packet_size: config.max_packet_size,
                receive_maximum: config.receive_maximum,
                topic_alias_maximum: config.topic_alias_maximum,
                max_keep_alive_secs: config.max_keep_alive_secs,
                max_session_expiry_secs: config.max_session_expiry_secs,
                max_subscriptions: limits.max_subscriptions_per_connection,
            }),
            deadlines: config.deadlines,
            write_batch: config.write_batch,
            max_connections: limits.max_connections,
        })
    }
}
