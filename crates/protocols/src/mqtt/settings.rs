//! The `[mqtt]` section as connections use it ([`Live`], one per listener, read on every accept) and its hot
//! reload: limits, auth and deadlines apply to new connections, the retained and session bounds at once;
//! addresses, TLS files, the WebSocket path and `enabled` need a restart.

use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;

use super::config::Config;
use super::session::{Settings, Shared};
use crate::accept::Deadlines;
use crate::auth::Authenticator;
use crate::Reload;

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
    pub fn new(config: &Config, transport: Transport) -> anyhow::Result<Live> {
        config.validate().map_err(anyhow::Error::msg)?;
        let auth = Arc::new(
            Authenticator::new(config.auth.clone())
                .context("mqtt.auth")?
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

/// Applies a new `[mqtt]` section to every running MQTT listener.
pub struct Reloader {
    pub started: Config,
    pub listeners: Vec<(Transport, Arc<ArcSwap<Live>>)>,
    pub shared: Shared,
}

impl Reload for Reloader {
    fn reload(&self, section: &toml::Value) -> Result<Vec<String>, String> {
        let next: Config = section
            .clone()
            .try_into()
            .map_err(|error| format!("mqtt: {error}"))?;
        let mut lives = Vec::new();
        for (transport, live) in &self.listeners {
            let next_live = Live::new(&next, *transport).map_err(|error| format!("{error:#}"))?;
            lives.push((live, next_live));
        }
        for (live, next_live) in lives {
            live.store(Arc::new(next_live));
        }
        self.shared
            .retained
            .set_limits(next.max_retained_messages, next.max_retained_bytes);
        self.shared.sessions.set_max_saved(next.max_stored_sessions);
        let started = &self.started;
        Ok(crate::restart_needed(&[
            ("mqtt.tcp.enabled", started.tcp.enabled != next.tcp.enabled),
            ("mqtt.tcp.address", started.tcp.address != next.tcp.address),
            ("mqtt.tls.enabled", started.tls.enabled != next.tls.enabled),
            ("mqtt.tls.address", started.tls.address != next.tls.address),
            ("mqtt.tls.tls", started.tls.tls != next.tls.tls),
            ("mqtt.ws.enabled", started.ws.enabled != next.ws.enabled),
            ("mqtt.ws.address", started.ws.address != next.ws.address),
            ("mqtt.ws.path", started.ws.path != next.ws.path),
        ]))
    }
}

/// One listener's handle on the shared reloader.
pub struct Handle(pub Arc<Reloader>);

impl Reload for Handle {
    fn reload(&self, section: &toml::Value) -> Result<Vec<String>, String> {
        self.0.reload(section)
    }
}
