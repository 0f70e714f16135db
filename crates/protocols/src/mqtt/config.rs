//! The `[mqtt]` config section: what every MQTT listener shares (packet and session limits, retained store,
//! deadlines, auth) and one sub-section per transport (`[mqtt.tcp]`, `[mqtt.tls]`, `[mqtt.ws]`). Every
//! listener is off unless its section says `enabled = true`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::accept::Deadlines;
use crate::auth::AuthConfig;
use crate::config::{at_least_one, ConfigError};
use crate::limits::ListenerLimits;
use crate::tls::TlsConfig;

/// The whole `[mqtt]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Largest packet accepted from a client (its remaining length), and the Maximum Packet Size told to 5.0
    /// clients.
    pub max_packet_size: usize,
    /// QoS 1 and 2 publishes a client may have unacknowledged towards gatewayd (Receive Maximum told to 5.0
    /// clients); gatewayd's own in-flight towards a client is bounded by the client's Receive Maximum and by this.
    pub receive_maximum: u16,
    /// Topic aliases a 5.0 client may set on its publishes (Topic Alias Maximum told to 5.0 clients).
    pub topic_alias_maximum: u16,
    /// Longest keep-alive accepted; 5.0 clients asking for more (or for none) are told this one (Server Keep
    /// Alive), 3.1.1 clients keep what they asked for.
    pub max_keep_alive_secs: u16,
    /// Longest session expiry interval kept for a 5.0 client that disconnects (seconds); 3.1.1 clients with
    /// clean session 0 are kept this long.
    pub max_session_expiry_secs: u32,
    /// Sessions (client ids) kept for clients that are gone.
    pub max_stored_sessions: usize,
    /// Retained messages kept at most, over every topic.
    pub max_retained_messages: usize,
    /// Payload bytes of retained messages kept at most.
    pub max_retained_bytes: usize,
    /// Deliveries taken from the bus and written with one write.
    pub write_batch: usize,
    /// Pre-auth (TLS, WebSocket upgrade and CONNECT), unfinished-packet and blocked-write deadlines.
    pub deadlines: Deadlines,
    /// Username/password: the password is the token (or JWT) checked; without one the anonymous identity.
    pub auth: AuthConfig,
    pub tcp: TcpConfig,
    pub tls: TlsListenerConfig,
    pub ws: WsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_packet_size: 1 << 20,
            receive_maximum: 64,
            topic_alias_maximum: 16,
            max_keep_alive_secs: 3_600,
            max_session_expiry_secs: 3_600,
            max_stored_sessions: 10_000,
            max_retained_messages: 10_000,
            max_retained_bytes: 64 << 20,
            write_batch: 64,
            deadlines: Deadlines::default(),
            auth: AuthConfig::default(),
            tcp: TcpConfig::default(),
            tls: TlsListenerConfig::default(),
            ws: WsConfig::default(),
        }
    }
}

impl Config {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.deadlines.validate("mqtt")?;
        if self.max_packet_size < 64 || self.max_packet_size > 268_435_455 {
            return Err(ConfigError::new(
                "mqtt.max_packet_size",
                "between 64 and 268435455",
            ));
        }
        at_least_one("mqtt.receive_maximum", u64::from(self.receive_maximum))?;
        at_least_one("mqtt.write_batch", self.write_batch as u64)?;
        if self.ws.enabled && !self.ws.path.starts_with('/') {
            return Err(ConfigError::new("mqtt.ws.path", "must start with /"));
        }
        if self.tls.enabled {
            self.tls
                .tls
                .check_files()
                .map_err(|error| ConfigError::from(error).within("mqtt.tls"))?;
        }
        if !self.auth.certificates.is_empty() && self.tls.tls.client_ca_file.is_none() {
            return Err(ConfigError::new(
                "mqtt.auth.certificates",
                "needs mqtt.tls.tls.client_ca_file",
            ));
        }
        crate::auth::Authenticator::new(self.auth.clone())
            .map(drop)
            .map_err(|error| ConfigError::from(error).within("mqtt"))
    }

    /// The keys of what only a restart applies that differ between `self` (the running section) and `next`.
    pub fn restart_only(&self, next: &Config) -> Vec<String> {
        crate::restart_only!(
            "mqtt",
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
                ws.path
            ]
        )
    }

    /// Whether any MQTT listener is enabled.
    pub fn enabled(&self) -> bool {
        self.tcp.enabled || self.tls.enabled || self.ws.enabled
    }
}

/// `[mqtt.tcp]`: plain MQTT.
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
            address: SocketAddr::from(([0, 0, 0, 0], 1883)),
            limits: ListenerLimits::default(),
        }
    }
}

/// `[mqtt.tls]`: MQTT over TLS.
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
            address: SocketAddr::from(([0, 0, 0, 0], 8883)),
            limits: ListenerLimits::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// `[mqtt.ws]`: MQTT over WebSocket (subprotocol `mqtt`, binary messages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    pub enabled: bool,
    pub address: SocketAddr,
    /// Request path of the upgrade.
    pub path: String,
    pub limits: ListenerLimits,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            enabled: false,
            address: SocketAddr::from(([0, 0, 0, 0], 8083)),
            path: "/mqtt".into(),
            limits: ListenerLimits::default(),
        }
    }
}
