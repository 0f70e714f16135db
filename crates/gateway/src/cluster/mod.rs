//! Cluster mode: the `[cluster]` config section and the NATS and Redis backends that let several gatewayd nodes
//! share one bus (on Redis optionally in upstream MessageLoop's key layout, `ml2_*.rs`). The default is the embedded
//! single-node bus with no external service.

#[cfg(test)]
mod config_tests;
mod jetstream;
mod ml2_keys;
mod ml2_message;
mod ml2_read;
mod ml2_write;
mod nats;
mod presence;
mod redis;
mod redis_history;
mod redis_keys;
mod redis_presence;
mod redis_serve;
mod shared;
mod subjects;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use core_bus::Bus;
use protocols::config::ConfigError;
use serde::{Deserialize, Serialize};

pub use nats::NatsCluster;
pub use redis::RedisCluster;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterBackendKind {
    /// The embedded single-node bus; no external service.
    #[default]
    Single,
    /// Nodes exchange envelopes through a NATS server.
    Nats,
    /// Nodes exchange envelopes through a Redis server (Pub/Sub; anycast claims with `SET NX`).
    Redis,
}

/// Where MessageLoop/chanserv history lives in cluster mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryMode {
    /// Each node keeps and numbers its own history.
    #[default]
    Local,
    /// One JetStream stream per `[[bus.history]]` rule numbers history topics for the whole cluster.
    Jetstream,
    /// One Redis stream per `[[bus.history]]` rule numbers history topics for the whole cluster.
    Streams,
}

/// Where presence (MessageLoop members of a channel) lives in cluster mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceMode {
    /// Each node knows only its own members.
    #[default]
    Local,
    /// Members are shared through a NATS KV bucket (needs JetStream on the NATS server).
    Kv,
}

/// How MessageLoop channels are laid out in Redis (`backend = "redis"` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageLoopLayout {
    /// Every topic travels under `key_prefix` in gatewayd's own encoding.
    #[default]
    Gatewayd,
    /// Topics that are MessageLoop channels use upstream MessageLoop G2's Redis broker layout (`ml2:` keys), so
    /// gatewayd and MessageLoop nodes sharing the Redis see each other's messages and history.
    Ml2,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    pub backend: ClusterBackendKind,
    /// Server URLs: NATS (`["nats://127.0.0.1:4222"]`) or Redis (`["redis://127.0.0.1:6379"]`, `rediss://` for
    /// TLS; tried in order on every (re)connect).
    pub urls: Vec<String>,
    /// Every subject gatewayd uses starts with this token.
    pub subject_prefix: String,
    /// NATS credentials file (`.creds`), optional.
    pub credentials_file: Option<PathBuf>,
    /// Require TLS to the NATS server.
    pub require_tls: bool,
    /// Envelopes waiting to be forwarded; when full, forwarding drops and counts.
    pub forward_queue: usize,
    /// `local` (per node) or `jetstream` (cluster-wide offsets; needs JetStream on the NATS server).
    pub history: HistoryMode,
    /// `local` (per node) or `kv` (cluster-wide, through NATS KV).
    pub presence: PresenceMode,
    /// Redis only: every key and channel gatewayd uses starts with this text.
    pub key_prefix: String,
    /// Redis only: ACL user name (overrides one in the URL).
    pub username: Option<String>,
    /// Redis only: a file holding the password (overrides one in the URL).
    pub password_file: Option<PathBuf>,
    /// Redis only: `gatewayd` (own keys) or `ml2` (share MessageLoop channels with upstream MessageLoop nodes).
    pub messageloop_layout: MessageLoopLayout,
}

const DEFAULT_KEY_PREFIX: &str = "gatewayd:";
const DEFAULT_SUBJECT_PREFIX: &str = "gatewayd";

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            backend: ClusterBackendKind::Single,
            urls: vec!["nats://127.0.0.1:4222".into()],
            subject_prefix: DEFAULT_SUBJECT_PREFIX.into(),
            credentials_file: None,
            require_tls: false,
            forward_queue: 65_536,
            history: HistoryMode::Local,
            presence: PresenceMode::Local,
            key_prefix: DEFAULT_KEY_PREFIX.into(),
            username: None,
            password_file: None,
            messageloop_layout: MessageLoopLayout::Gatewayd,
        }
    }
}

impl ClusterConfig {
    /// Config problems serde cannot see, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backend != ClusterBackendKind::Single && self.urls.is_empty() {
            return Err(ConfigError::new(
                "cluster.urls",
                "at least one server URL is needed",
            ));
        }
        if self.history == HistoryMode::Jetstream && self.backend != ClusterBackendKind::Nats {
            return Err(ConfigError::new(
                "cluster.history",
                "\"jetstream\" needs backend = \"nats\"",
            ));
        }
        if self.history == HistoryMode::Streams && self.backend != ClusterBackendKind::Redis {
            return Err(ConfigError::new(
                "cluster.history",
                "\"streams\" needs backend = \"redis\"",
            ));
        }
        if self.backend == ClusterBackendKind::Single && self.presence != PresenceMode::Local {
            return Err(ConfigError::new(
                "cluster.presence",
                "\"kv\" needs backend = \"nats\" or \"redis\"",
            ));
        }
        if self.backend == ClusterBackendKind::Redis {
            return self.validate_redis();
        }
        if self.key_prefix != DEFAULT_KEY_PREFIX {
            return Err(ConfigError::new(
                "cluster.key_prefix",
                "needs backend = \"redis\"",
            ));
        }
        if self.username.is_some() {
            return Err(ConfigError::new(
                "cluster.username",
                "needs backend = \"redis\"",
            ));
        }
        if self.password_file.is_some() {
            return Err(ConfigError::new(
                "cluster.password_file",
                "needs backend = \"redis\"",
            ));
        }
        if self.messageloop_layout != MessageLoopLayout::Gatewayd {
            return Err(ConfigError::new(
                "cluster.messageloop_layout",
                "\"ml2\" needs backend = \"redis\"",
            ));
        }
        for url in &self.urls {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|e| ConfigError::new("cluster.urls", format!("{url:?}: {e}")))?;
        }
        if self.subject_prefix.is_empty() || self.subject_prefix.contains(['.', '*', '>', ' ']) {
            return Err(ConfigError::new(
                "cluster.subject_prefix",
                "one NATS token without '.', '*', '>' or spaces",
            ));
        }
        if let Some(path) = &self.credentials_file {
            if !path.is_file() {
                return Err(ConfigError::new(
                    "cluster.credentials_file",
                    format!("{} does not exist", path.display()),
                ));
            }
        }
        Ok(())
    }

    fn validate_redis(&self) -> Result<(), ConfigError> {
        if self.credentials_file.is_some() {
            return Err(ConfigError::new(
                "cluster.credentials_file",
                "needs backend = \"nats\"",
            ));
        }
        if self.subject_prefix != DEFAULT_SUBJECT_PREFIX {
            return Err(ConfigError::new(
                "cluster.subject_prefix",
                "needs backend = \"nats\" (Redis uses key_prefix)",
            ));
        }
        for url in &self.urls {
            use ::redis::IntoConnectionInfo as _;
            let info = url.as_str().into_connection_info().map_err(|e| {
                ConfigError::new(
                    "cluster.urls",
                    format!("{url:?}: not a redis:// or rediss:// URL: {e}"),
                )
            })?;
            let tls = matches!(info.addr(), ::redis::ConnectionAddr::TcpTls { .. });
            if self.require_tls && !tls {
                return Err(ConfigError::new(
                    "cluster.urls",
                    format!("{url:?}: require_tls needs a rediss:// URL"),
                ));
            }
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                "cluster.key_prefix",
                "non-empty, without spaces",
            ));
        }
        if let Some(path) = &self.password_file {
            if !path.is_file() {
                return Err(ConfigError::new(
                    "cluster.password_file",
                    format!("{} does not exist", path.display()),
                ));
            }
        }
        Ok(())
    }
}

/// Attaches the configured backend to `bus`.
pub async fn start(config: &ClusterConfig, bus: &Bus) -> anyhow::Result<()> {
    match config.backend {
        ClusterBackendKind::Single => Ok(()),
        ClusterBackendKind::Nats => {
            let backend = NatsCluster::connect(config, bus.clone()).await?;
            bus.set_cluster(Box::new(backend));
            Ok(())
        }
        ClusterBackendKind::Redis => {
            let backend = RedisCluster::connect(config, bus.clone())?;
            bus.set_cluster(Box::new(backend));
            Ok(())
        }
    }
}
