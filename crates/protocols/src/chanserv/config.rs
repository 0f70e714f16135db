//! The `[chanserv]` config section: the TCP listener gatewayd runs AstraNet on, the advertised service name, frame
//! compression and limits, and the auth of its requests (an optional `AUTH <token>` line, else the anonymous
//! identity).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::astranet::ServiceName;
use super::codec::frame::{Compression, DEFAULT_FRAME_LIMIT, PEER_FRAME_LIMIT};
use super::timeouts::TimeoutsConfig;
use crate::accept::Deadlines;
use crate::auth::AuthConfig;
use crate::config::{at_least_one, ConfigError};
use crate::limits::ListenerLimits;

/// `[chanserv]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub enabled: bool,
    /// TCP address of the AstraNet listener (no TLS: AstraNet has none).
    pub address: SocketAddr,
    /// Name advertised with SERVICE, what Go clients pass to `LookupAndPost` (include any `WithEnv` suffix).
    pub service_name: String,
    /// `lz4`: compress frame-channel items when that makes them shorter (upstream `ServerUseCompression`).
    pub compression: CompressionSetting,
    /// Largest request body read from a master stream, `PUB` payloads included (at most 100 MiB).
    pub max_frame_bytes: u64,
    /// Most sources one subscribe request announces; one more source then reports the cap.
    pub max_sources_per_request: usize,
    /// The server timeouts, upstream's defaults (`[chanserv.timeouts]`).
    pub timeouts: TimeoutsConfig,
    pub limits: ListenerLimits,
    /// Pre-auth (the AstraNet handshake), unfinished-op and blocked-write deadlines.
    pub deadlines: Deadlines,
    /// A request may start with an `AUTH <token>` line (static tokens or JWT); one without acts as
    /// `auth.anonymous`, or is refused when `auth.required`.
    pub auth: AuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: false,
            address: SocketAddr::from(([0, 0, 0, 0], 5555)),
            service_name: ServiceName::default().as_str().to_owned(),
            compression: CompressionSetting::None,
            max_frame_bytes: DEFAULT_FRAME_LIMIT,
            max_sources_per_request: 256,
            timeouts: TimeoutsConfig::default(),
            limits: ListenerLimits::default(),
            deadlines: Deadlines::default(),
            auth: AuthConfig::default(),
        }
    }
}

/// `compression = "none" | "lz4"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionSetting {
    #[default]
    None,
    Lz4,
}

impl From<CompressionSetting> for Compression {
    fn from(setting: CompressionSetting) -> Compression {
        match setting {
            CompressionSetting::None => Compression::Off,
            CompressionSetting::Lz4 => Compression::Lz4,
        }
    }
}

impl Config {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.service()?;
        if self.max_frame_bytes == 0 || self.max_frame_bytes > PEER_FRAME_LIMIT {
            return Err(ConfigError::new(
                "chanserv.max_frame_bytes",
                format!(
                    "must be 1..={PEER_FRAME_LIMIT}, got {}",
                    self.max_frame_bytes
                ),
            ));
        }
        at_least_one(
            "chanserv.max_sources_per_request",
            self.max_sources_per_request as u64,
        )?;
        at_least_one("chanserv.timeouts.accept_secs", self.timeouts.accept_secs)?;
        self.deadlines.validate("chanserv")
    }

    /// The keys of what only a restart applies that differ between `self` (the running section) and `next`.
    pub fn restart_only(&self, next: &Config) -> Vec<String> {
        crate::restart_only!("chanserv", self, next, [enabled, address])
    }

    /// The advertised service name.
    pub fn service(&self) -> Result<ServiceName, ConfigError> {
        ServiceName::new(self.service_name.clone())
            .map_err(|e| ConfigError::new("chanserv.service_name", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_unknown_keys_are_refused() {
        let config: Config = toml::from_str("enabled = true\ncompression = \"lz4\"\n").unwrap();
        assert!(config.enabled);
        assert_eq!(config.address.port(), 5555);
        assert_eq!(config.service_name, "chanserv");
        assert_eq!(Compression::from(config.compression), Compression::Lz4);
        assert_eq!(config.validate(), Ok(()));
        assert!(toml::from_str::<Config>("tls = true\n").is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let bad = Config {
            service_name: String::new(),
            ..Config::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "chanserv.service_name");
        let bad = Config {
            max_frame_bytes: PEER_FRAME_LIMIT + 1,
            ..Config::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "chanserv.max_frame_bytes");
        let bad = Config {
            max_sources_per_request: 0,
            ..Config::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().key,
            "chanserv.max_sources_per_request"
        );
        let bad: Config = toml::from_str("[timeouts]\naccept_secs = 0\n").unwrap();
        assert_eq!(
            bad.validate().unwrap_err().key,
            "chanserv.timeouts.accept_secs"
        );
    }
}
