//! The `[goomerang]` config section: where the WebSocket listener binds, its limits, the wrapper kind of
//! foreign messages, and its auth: a token on the WebSocket upgrade or a TLS client certificate, else the
//! anonymous identity (with its ACLs).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::bridge::routing::{
    ForeignKindRule, ForeignKinds, RoutingError, SendRoutes, DEFAULT_SEND_PREFIX,
};
use super::bridge::WrapperKind;
use super::codec::limits::Limits;
use crate::accept::Deadlines;
use crate::auth::AuthConfig;
use crate::config::{at_least_one, ConfigError};
use crate::limits::ListenerLimits;
use crate::tls::TlsConfig;

/// The `[goomerang]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Start the listener (off unless configured, so tests and other listeners never collide on its port).
    pub enabled: bool,
    /// Where the WebSocket listener binds; clients dial `ws://<address>/ws` (or `wss://…/wss` with TLS).
    pub address: SocketAddr,
    /// Serve WebSocket over TLS (`wss://`).
    pub tls: Option<TlsConfig>,
    /// Connections and subscriptions per connection.
    pub limits: ListenerLimits,
    /// Pre-auth (TLS and upgrade), unfinished-frame and blocked-write deadlines.
    pub deadlines: Deadlines,
    /// A connection from which nothing (no frame, no pong) arrived for this long is closed with "idle timeout";
    /// gatewayd pings a quiet client at half of it, which every WebSocket client answers. 0 turns both off.
    pub idle_timeout_secs: u64,
    /// Size limits of client frames and of deliveries (`[goomerang.frame_limits]`).
    pub frame_limits: Limits,
    /// The kind foreign (non-Goomerang) messages are delivered as; its message must be shaped like
    /// `google.protobuf.BytesValue`.
    pub wrapper_kind: WrapperKind,
    /// A plain `Send(msg)` of kind `K` is published on `<send_topic_prefix>.<K>` (`goomerang.send.<K>`).
    pub send_topic_prefix: String,
    /// Per-kind overrides of that topic: full name → topic name.
    pub send_topics: BTreeMap<String, String>,
    /// Topic patterns whose foreign messages already are protobuf of a kind: delivered as it, not wrapped.
    pub foreign_kinds: Vec<ForeignKindRule>,
    /// Credentials on the upgrade (`Authorization: Bearer` or `?access_token=`: static tokens or JWT),
    /// identities of TLS client certificates, and the anonymous identity.
    pub auth: AuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: false,
            address: SocketAddr::from(([0, 0, 0, 0], 8080)),
            tls: None,
            limits: ListenerLimits::default(),
            deadlines: Deadlines::default(),
            idle_timeout_secs: 60,
            frame_limits: Limits::default(),
            wrapper_kind: WrapperKind::default(),
            send_topic_prefix: DEFAULT_SEND_PREFIX.to_owned(),
            send_topics: BTreeMap::new(),
            foreign_kinds: Vec::new(),
            auth: AuthConfig::default(),
        }
    }
}

impl Config {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.deadlines.validate("goomerang")?;
        crate::auth::Authenticator::new(self.auth.clone())
            .map_err(|error| ConfigError::from(error).within("goomerang"))?;
        let client_ca = self
            .tls
            .as_ref()
            .and_then(|tls| tls.client_ca_file.as_ref());
        if !self.auth.certificates.is_empty() && client_ca.is_none() {
            return Err(ConfigError::new(
                "goomerang.auth.certificates",
                "needs goomerang.tls.client_ca_file",
            ));
        }
        at_least_one(
            "goomerang.frame_limits.max_message_size",
            self.frame_limits.max_message_size as u64,
        )?;
        self.send_routes()?;
        self.foreign_kinds()?;
        if let Some(tls) = &self.tls {
            tls.check_files()
                .map_err(|error| ConfigError::from(error).within("goomerang"))?;
        }
        Ok(())
    }
}

impl Config {
    /// The keys of what only a restart applies that differ between `self` (the running section) and `next`.
    pub fn restart_only(&self, next: &Config) -> Vec<String> {
        crate::restart_only!("goomerang", self, next, [enabled, address, tls])
    }

    /// Where plain sends go.
    pub fn send_routes(&self) -> Result<SendRoutes, RoutingError> {
        SendRoutes::new(&self.send_topic_prefix, &self.send_topics)
    }

    /// The kinds foreign messages are delivered as, per topic.
    pub fn foreign_kinds(&self) -> Result<ForeignKinds, RoutingError> {
        ForeignKinds::new(&self.foreign_kinds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_full_section() {
        let config: Config = toml::from_str("").unwrap();
        assert_eq!(config, Config::default());
        assert!(!config.enabled);
        assert_eq!(config.address.to_string(), "0.0.0.0:8080");
        assert_eq!(config.wrapper_kind.as_str(), "google.protobuf.BytesValue");
        config.validate().unwrap();

        let config: Config = toml::from_str(
            r#"
            enabled = true
            address = "127.0.0.1:0"
            wrapper_kind = "gatewayd.v1.Blob"
            send_topic_prefix = "handlers"
            [send_topics]
            "acme.v1.Order" = "orders.new"
            [[foreign_kinds]]
            topic = "orders.#"
            kind = "acme.v1.Order"
            [limits]
            max_connections = 3
            [frame_limits]
            max_message_size = 1000
            [auth.anonymous]
            name = "goomerang"
            publish = ["news.#"]
            "#,
        )
        .unwrap();
        assert!(config.enabled);
        assert_eq!(config.wrapper_kind.as_str(), "gatewayd.v1.Blob");
        assert_eq!(config.limits.max_connections, 3);
        assert_eq!(config.frame_limits.max_message_size, 1000);
        assert_eq!(config.frame_limits.max_headers, 64);
        assert_eq!(config.auth.anonymous.name, "goomerang");
        assert_eq!(
            config
                .send_routes()
                .unwrap()
                .topic("acme.v1.Order")
                .as_str(),
            "orders.new"
        );
        assert_eq!(
            config
                .foreign_kinds()
                .unwrap()
                .kind_of(&core_bus::Topic::from_dotted(b"orders.eu")),
            Some("acme.v1.Order")
        );
        config.validate().unwrap();
    }

    #[test]
    fn bad_sections_are_refused() {
        for text in [
            "port = 1",
            "wrapper_kind = \"type.googleapis.com/x.Y\"",
            "[frame_limits]\nmax_size = 1",
        ] {
            assert!(toml::from_str::<Config>(text).is_err(), "{text}");
        }
        for text in [
            "[auth]\n[[auth.certificates]]\ncommon_name = \"a\"\nidentity = { name = \"a\" }",
            "[frame_limits]\nmax_message_size = 0",
            "send_topic_prefix = \"$x\"",
            "[[foreign_kinds]]\ntopic = \"a.>.b\"\nkind = \"a.B\"",
            "[tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"",
            "[tls]\ncert_file = \"/nonexistent/cert.pem\"",
        ] {
            let config: Config = toml::from_str(text).unwrap();
            let error = config.validate().unwrap_err();
            assert!(error.key.starts_with("goomerang."), "{error}");
        }
    }
}
