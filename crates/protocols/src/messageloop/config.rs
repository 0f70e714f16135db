//! The `[messageloop]` config section: the WebSocket and gRPC listeners, the wire generation override,
//! limits, heartbeat, RPC timeout, authentication and the backend proxies.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::generation::{Generation, GenerationSetting};
use super::proxy::{ProxyConfig, RpcFallback};
use crate::accept::Deadlines;
use crate::auth::AuthConfig;
use crate::config::{at_least_one, ConfigError};
use crate::limits::ListenerLimits;
use crate::tls::TlsConfig;

/// `[messageloop]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub ws: WsConfig,
    pub grpc: GrpcConfig,
    /// Which wire generation clients speak: `auto` detects it per connection (gRPC: from the method path).
    pub generation: GenerationOption,
    pub limits: Limits,
    pub heartbeat: HeartbeatConfig,
    /// Pre-auth (TLS, upgrade or HTTP/2 preface, and Connect), unfinished-frame and blocked-write deadlines.
    pub deadlines: Deadlines,
    /// How long an RPC waits for the first reply before RPC_TIMEOUT.
    pub rpc_timeout_secs: u64,
    pub auth: AuthConfig,
    /// `[[messageloop.proxy]]`: backends for client RPCs and Connect tokens.
    pub proxy: Vec<ProxyConfig>,
    /// What an RPC no proxy route matches does: `bus` (a responder on any protocol) or `none` (NO_PROXY).
    pub rpc_fallback: RpcFallback,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ws: WsConfig::default(),
            grpc: GrpcConfig::default(),
            generation: GenerationOption::Auto,
            limits: Limits::default(),
            heartbeat: HeartbeatConfig::default(),
            deadlines: Deadlines::default(),
            rpc_timeout_secs: 30,
            auth: AuthConfig::default(),
            proxy: Vec::new(),
            rpc_fallback: RpcFallback::Bus,
        }
    }
}

impl Config {
    pub fn generation_setting(&self) -> GenerationSetting {
        match self.generation {
            GenerationOption::Auto => GenerationSetting::Auto,
            GenerationOption::G0 => GenerationSetting::Fixed(Generation::G0),
            GenerationOption::G1 => GenerationSetting::Fixed(Generation::G1),
            GenerationOption::G2 => GenerationSetting::Fixed(Generation::G2),
        }
    }

    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_secs(self.rpc_timeout_secs)
    }

    /// The keys of what only a restart applies that differ between `self` (the running section) and `next`.
    /// tonic's decoding limit is fixed when the gRPC server is built; the WebSocket listener reads it per
    /// connection.
    pub fn restart_only(&self, next: &Config) -> Vec<String> {
        let mut keys = crate::restart_only!(
            "messageloop",
            self,
            next,
            [
                ws.enabled,
                ws.address,
                ws.path,
                ws.tls,
                grpc.enabled,
                grpc.address,
                grpc.tls
            ]
        );
        if self.grpc.enabled {
            keys.extend(crate::restart_only!(
                "messageloop",
                self,
                next,
                [limits.max_message_size]
            ));
        }
        keys
    }

    /// Checks what serde cannot: the TLS files of enabled listeners, the auth settings and the proxies.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::auth::Authenticator::new(self.auth.clone())
            .map_err(|error| ConfigError::from(error).within("messageloop"))?;
        for (name, enabled, tls) in [
            ("messageloop.ws", self.ws.enabled, &self.ws.tls),
            ("messageloop.grpc", self.grpc.enabled, &self.grpc.tls),
        ] {
            if let (true, Some(tls)) = (enabled, tls) {
                tls.check_files()
                    .map_err(|error| ConfigError::from(error).within(name))?;
            }
        }
        self.deadlines.validate("messageloop")?;
        at_least_one(
            "messageloop.limits.max_message_size",
            self.limits.max_message_size as u64,
        )?;
        super::proxy::config::validate(&self.proxy)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GenerationOption {
    Auto,
    G0,
    G1,
    G2,
}

/// `[messageloop.ws]`: WebSocket (`ws://host:9080/ws`, `wss` with `tls`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    pub enabled: bool,
    pub address: SocketAddr,
    pub path: String,
    pub tls: Option<TlsConfig>,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            enabled: false,
            address: SocketAddr::from(([0, 0, 0, 0], 9080)),
            path: "/ws".to_owned(),
            tls: None,
        }
    }
}

/// `[messageloop.grpc]`: bidi streaming over HTTP/2 cleartext, or TLS with `tls`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    pub enabled: bool,
    pub address: SocketAddr,
    pub tls: Option<TlsConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            enabled: false,
            address: SocketAddr::from(([0, 0, 0, 0], 9090)),
            tls: None,
        }
    }
}

/// `[messageloop.limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Per listener.
    pub max_connections: usize,
    /// More subscriptions disconnect with 3505.
    pub max_subscriptions_per_connection: usize,
    /// Largest envelope in either direction (WS message, gRPC message).
    pub max_message_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let listener = ListenerLimits::default();
        Limits {
            max_connections: listener.max_connections,
            max_subscriptions_per_connection: listener.max_subscriptions_per_connection,
            max_message_size: super::MAX_MESSAGE_SIZE,
        }
    }
}

/// `[messageloop.heartbeat]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Seconds without any inbound frame before disconnect 3511; 0 = off.
    pub idle_timeout_secs: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            idle_timeout_secs: 300,
        }
    }
}

impl HeartbeatConfig {
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_refuses_unknown_keys() {
        let config: Config = toml::from_str(
            "generation = \"g2\"\n[ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n[heartbeat]\nidle_timeout_secs = 0\n",
        )
        .unwrap();
        assert!(config.ws.enabled);
        assert_eq!(config.ws.path, "/ws");
        assert_eq!(
            config.generation_setting(),
            GenerationSetting::Fixed(Generation::G2)
        );
        assert_eq!(config.heartbeat.idle_timeout(), None);
        assert_eq!(config.limits.max_message_size, 65_536);
        assert_eq!(config.rpc_timeout(), Duration::from_secs(30));
        assert!(toml::from_str::<Config>("[ws]\nport = 1\n").is_err());
        assert!(toml::from_str::<Config>("generation = \"g3\"\n").is_err());
    }

    #[test]
    fn validation_names_the_key() {
        assert_eq!(Config::default().validate(), Ok(()));
        let missing: Config = toml::from_str(
            "[grpc]\nenabled = true\ntls = { cert_file = \"/nonexistent.pem\", key_file = \"/nonexistent.key\" }\n",
        )
        .unwrap();
        let error = missing.validate().unwrap_err();
        assert!(error.key.starts_with("messageloop.grpc.tls"), "{error}");
        let jwt: Config = toml::from_str("[auth.jwt]\nalgorithm = \"HS256\"\n").unwrap();
        assert!(jwt
            .validate()
            .unwrap_err()
            .key
            .contains("messageloop.auth.jwt"));
        let proxy: Config = toml::from_str(
            "rpc_fallback = \"none\"\n[[proxy]]\nname = \"p\"\nendpoint = \"http://127.0.0.1:1/\"\n",
        )
        .unwrap();
        assert_eq!(proxy.rpc_fallback, RpcFallback::None);
        let error = proxy.validate().unwrap_err();
        assert!(
            error.key.starts_with("messageloop.proxy[0].routes"),
            "{error}"
        );
    }
}
