//! The `[loom]` config section: one UDP address serving Loom over raw QUIC and over HTTP/3, its TLS, limits,
//! QUIC timings and flow-control windows, the refusal delay for consumers, the room topic prefix and auth.
//!
//! Defaults follow upstream (docs/protocols/loom.md, "Port, ALPNs, TLS" and "Wire format"): port 4242, keep-alive
//! 15 s, idle timeout 30 s, 100 bidi streams per connection, stream window 512 KiB, connection window 768 KiB. TLS
//! defaults to a self-signed development certificate, as upstream does when no certificate is configured.

use std::net::SocketAddr;
use std::time::Duration;

use core_bus::Topic;
use serde::{Deserialize, Serialize};

use super::limits::{self, Limits};
use crate::accept::Deadlines;
use crate::auth::AuthConfig;
use crate::config::ConfigError;
use crate::limits::ListenerLimits;
use crate::tls::TlsConfig;

/// The `[loom]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub enabled: bool,
    /// UDP address for both ALPNs (`loom/1` and legacy `loom` = raw QUIC, `h3` = HTTP/3).
    pub address: SocketAddr,
    /// Defaults to `self_signed = true`: a fresh development certificate at every start. Loom clients skip
    /// verification by default (upstream does the same); configure `cert_file`/`key_file` in production.
    pub tls: TlsConfig,
    pub limits: LoomLimits,
    pub quic: QuicConfig,
    /// Pre-auth (QUIC handshake, and each stream's hello) and blocked-write deadlines; `idle_frame_ms` bounds the
    /// wait for the next piece of a cut-through message (`quic.idle_timeout_secs` ends silent connections).
    pub deadlines: Deadlines,
    /// How long a refused consumer stream stays open before its FIN, so that clients reconnecting in a loop
    /// (Loom-go does so without delay, docs/protocols/loom.md, "Refusals and errors") are slowed down.
    pub reject_delay_ms: u64,
    /// Rooms map to `<topic_prefix>.<room>` when set, else to the room alone (`.` separates tokens).
    pub topic_prefix: Option<Topic>,
    /// Loom hello tokens are checked as `Credentials { login: None, secret: token }`.
    pub auth: AuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: false,
            address: SocketAddr::from(([0, 0, 0, 0], 4242)),
            tls: TlsConfig {
                self_signed: true,
                ..TlsConfig::default()
            },
            limits: LoomLimits::default(),
            quic: QuicConfig::default(),
            deadlines: Deadlines::default(),
            reject_delay_ms: 1_000,
            topic_prefix: None,
            auth: AuthConfig::default(),
        }
    }
}

impl Config {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled {
            self.tls
                .check_files()
                .map_err(|error| ConfigError::from(error).within("loom"))?;
        }
        crate::auth::Authenticator::new(self.auth.clone())
            .map_err(|error| ConfigError::from(error).within("loom"))?;
        if self.limits.max_streamed_message_bytes < self.limits.max_message_bytes {
            return Err(ConfigError::new(
                "loom.limits.max_streamed_message_bytes",
                "must be at least max_message_bytes",
            ));
        }
        if !self.auth.certificates.is_empty() && self.tls.client_ca_file.is_none() {
            return Err(ConfigError::new(
                "loom.auth.certificates",
                "needs loom.tls.client_ca_file",
            ));
        }
        self.deadlines.validate("loom")
    }

    /// The keys of what only a restart applies that differ between `self` (the running section) and `next`.
    pub fn restart_only(&self, next: &Config) -> Vec<String> {
        crate::restart_only!("loom", self, next, [enabled, address, tls, quic])
    }

    pub fn reject_delay(&self) -> Duration {
        Duration::from_millis(self.reject_delay_ms)
    }
}

/// `[loom.limits]`: the listener's connection limits and the Loom framing limits (docs/protocols/loom.md,
/// "Wire format").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoomLimits {
    /// QUIC connections (each may carry many Loom streams).
    pub max_connections: usize,
    /// Consumer streams per connection.
    pub max_subscriptions_per_connection: usize,
    pub max_name_bytes: usize,
    pub max_room_bytes: usize,
    pub max_token_bytes: usize,
    pub max_key_bytes: usize,
    pub max_chunk_bytes: usize,
    /// Largest message held whole and put on the bus, where every protocol can receive it.
    pub max_message_bytes: u64,
    /// Largest message cut through to one Loom consumer of the room (at least `max_message_bytes`; equal turns
    /// cut-through off). A larger message (declared or actual) ends its producer stream and counts as `too_large`.
    pub max_streamed_message_bytes: u64,
}

impl Default for LoomLimits {
    fn default() -> Self {
        let listener = ListenerLimits::default();
        let codec = Limits::default();
        LoomLimits {
            max_connections: listener.max_connections,
            max_subscriptions_per_connection: listener.max_subscriptions_per_connection,
            max_name_bytes: codec.max_name_bytes,
            max_room_bytes: codec.max_room_bytes,
            max_token_bytes: codec.max_token_bytes,
            max_key_bytes: codec.max_key_bytes,
            max_chunk_bytes: codec.max_chunk_bytes,
            max_message_bytes: codec.max_message_bytes,
            max_streamed_message_bytes: codec.max_streamed_message_bytes,
        }
    }
}

impl LoomLimits {
    pub fn listener(&self) -> ListenerLimits {
        ListenerLimits {
            max_connections: self.max_connections,
            max_subscriptions_per_connection: self.max_subscriptions_per_connection,
        }
    }

    /// The codec limits. Keys and chunks are capped at what real consumers accept, whatever is configured.
    pub fn codec(&self) -> Limits {
        Limits {
            max_name_bytes: self.max_name_bytes,
            max_room_bytes: self.max_room_bytes,
            max_token_bytes: self.max_token_bytes,
            max_key_bytes: self.max_key_bytes.min(limits::DEFAULT_MAX_KEY_BYTES),
            max_chunk_bytes: self.max_chunk_bytes.min(limits::DEFAULT_MAX_CHUNK_BYTES),
            max_message_bytes: self.max_message_bytes,
            max_streamed_message_bytes: self.max_streamed_message_bytes,
            ..Limits::default()
        }
    }
}

/// `[loom.quic]`: transport parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicConfig {
    /// PING interval; 0 disables keep-alive.
    pub keep_alive_secs: u64,
    pub idle_timeout_secs: u64,
    /// Client-initiated bidirectional streams open at once per connection (one per Loom session).
    pub max_concurrent_bidi_streams: u32,
    /// Receive window of one stream: how far a producer can run ahead of gatewayd.
    pub stream_receive_window: u32,
    /// Receive window of the whole connection.
    pub receive_window: u32,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            keep_alive_secs: 15,
            idle_timeout_secs: 30,
            max_concurrent_bidi_streams: 100,
            stream_receive_window: 512 << 10,
            receive_window: 768 << 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_reference() {
        let config = Config::default();
        assert_eq!(config.address.port(), 4242);
        assert!(config.tls.self_signed);
        assert_eq!(config.reject_delay(), Duration::from_secs(1));
        assert_eq!(
            (config.quic.keep_alive_secs, config.quic.idle_timeout_secs),
            (15, 30)
        );
        assert_eq!(config.limits.codec(), Limits::default());
    }

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let config: Config = toml::from_str(
            "enabled = true\naddress = \"127.0.0.1:0\"\ntopic_prefix = \"loom\"\n[limits]\nmax_key_bytes = 9000\n",
        )
        .unwrap();
        assert!(config.enabled);
        assert_eq!(config.topic_prefix, Some(Topic::parse("loom").unwrap()));
        assert_eq!(config.limits.codec().max_key_bytes, 256);
        assert!(toml::from_str::<Config>("adress = \"x\"").is_err());
        let below: Config = toml::from_str(
            "[limits]\nmax_message_bytes = 2048\nmax_streamed_message_bytes = 1024\n",
        )
        .unwrap();
        assert!(below
            .validate()
            .unwrap_err()
            .key
            .contains("max_streamed_message_bytes"));
        let off: Config = toml::from_str(
            "[limits]\nmax_message_bytes = 1024\nmax_streamed_message_bytes = 1024\n",
        )
        .unwrap();
        assert_eq!(off.validate(), Ok(()));
        assert!(toml::from_str::<Config>("[quic]\nidle = 1").is_err());
    }
}
