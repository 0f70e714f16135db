//! The `[stomp]` config section: settings every STOMP listener shares (frame limits, transaction caps,
//! heart-beats, destinations, auth) and one sub-section per transport (`[stomp.tcp]`, `[stomp.tls]`,
//! `[stomp.ws]`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::limits::Limits;
use super::negotiate::HeartBeatPolicy;
use super::transaction::TxLimits;
use crate::accept::Deadlines;
use crate::auth::AuthConfig;
use crate::config::ConfigError;
use crate::limits::ListenerLimits;
use crate::tls::TlsConfig;

/// What SUBSCRIBE and SEND do with a destination whose prefix gatewayd does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownDestination {
    /// ERROR "Unknown destination" and close (RabbitMQ).
    #[default]
    Error,
    /// Treat the whole string as a topic name (the seed broker and ActiveMQ).
    Topic,
}

/// The whole `[stomp]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub limits: Limits,
    pub transactions: TxLimits,
    pub heart_beat: HeartBeatPolicy,
    pub unknown_destination: UnknownDestination,
    /// Window of a `/queue/` subscription in a client ack mode when SUBSCRIBE names no
    /// `prefetch-count` / `activemq.prefetchSize`.
    pub default_prefetch: u32,
    /// Pre-auth (TLS, WebSocket upgrade and CONNECT), unfinished-frame and blocked-write deadlines.
    pub deadlines: Deadlines,
    /// Deliveries taken from the bus and written with one write.
    pub write_batch: usize,
    /// Durable topic subscriptions (backing queues) kept at most, over all STOMP listeners.
    pub max_durable_subscriptions: usize,
    pub auth: AuthConfig,
    pub tcp: TcpConfig,
    pub tls: TlsListenerConfig,
    pub ws: WsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::DEFAULT,
            transactions: TxLimits::default(),
            heart_beat: HeartBeatPolicy::default(),
            unknown_destination: UnknownDestination::Error,
            default_prefetch: 100,
            deadlines: Deadlines::default(),
            write_batch: 64,
            max_durable_subscriptions: 1_000,
            auth: AuthConfig::default(),
            tcp: TcpConfig::default(),
            tls: TlsListenerConfig::default(),
            ws: WsConfig::default(),
        }
    }
}

impl Config {
    /// The keys of what only a restart applies that differ between `self` (the section applied last) and `next`.
    pub fn restart_only(&self, next: &Config) -> Vec<String> {
        crate::restart_only!(
            "stomp",
            self,
            next,
            [
                tcp.enabled,
                tcp.address,
                tls.enabled,
                tls.address,
                tls.tls,
                ws.enabled,
                ws.address,
                ws.path,
                ws.tls,
                ws.max_message_bytes
            ]
        )
    }

    /// Checks what serde cannot: the auth settings, the TLS files of enabled listeners, where client
    /// certificates can come from, the deadlines.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::auth::Authenticator::new(self.auth.clone())
            .map_err(|error| ConfigError::from(error).within("stomp"))?;
        if self.tls.enabled {
            self.tls
                .tls
                .check_files()
                .map_err(|error| ConfigError::from(error).within("stomp.tls"))?;
        }
        let ws_tls = self.ws.tls.as_ref().filter(|_| self.ws.enabled);
        let client_ca = (self.tls.enabled && self.tls.tls.client_ca_file.is_some())
            || ws_tls.is_some_and(|tls| tls.client_ca_file.is_some());
        if !self.auth.certificates.is_empty() && !client_ca {
            return Err(ConfigError::new(
                "stomp.auth.certificates",
                "needs stomp.tls.tls.client_ca_file or stomp.ws.tls.client_ca_file",
            ));
        }
        if let Some(tls) = ws_tls {
            tls.check_files()
                .map_err(|error| ConfigError::from(error).within("stomp.ws"))?;
        }
        self.deadlines.validate("stomp")
    }
}

/// `[stomp.tcp]`: plain STOMP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpConfig {
    pub enabled: bool,
    pub address: SocketAddr,
    pub limits: ListenerLimits,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            enabled: false,
            address: SocketAddr::from(([0, 0, 0, 0], 61613)),
            limits: ListenerLimits::default(),
        }
    }
}

/// `[stomp.tls]`: STOMP over TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsListenerConfig {
    pub enabled: bool,
    pub address: SocketAddr,
    pub limits: ListenerLimits,
    pub tls: TlsConfig,
}

impl Default for TlsListenerConfig {
    fn default() -> Self {
        TlsListenerConfig {
            enabled: false,
            address: SocketAddr::from(([0, 0, 0, 0], 61614)),
            limits: ListenerLimits::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// `[stomp.ws]`: STOMP over WebSocket (subprotocols `v10.stomp`, `v11.stomp`, `v12.stomp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    pub enabled: bool,
    pub address: SocketAddr,
    /// Request path of the upgrade.
    pub path: String,
    /// Largest WebSocket message accepted (a STOMP frame may span several).
    pub max_message_bytes: usize,
    pub limits: ListenerLimits,
    /// Serves `wss://` (TLS under the WebSocket) when set, with the shared TLS settings.
    pub tls: Option<TlsConfig>,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            enabled: false,
            address: SocketAddr::from(([0, 0, 0, 0], 15674)),
            path: "/ws".into(),
            max_message_bytes: 1 << 20,
            limits: ListenerLimits::default(),
            tls: None,
        }
    }
}
