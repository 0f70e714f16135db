//! Hot reload of the `[stomp]` section. Each running STOMP listener reads its [`Live`] settings from
//! an [`ArcSwap`] on every accept, so a reload changes what new connections get (frame and
//! transaction limits, heart-beat policy, destinations policy, prefetch, timeouts, auth tokens, JWT
//! keys and ACLs, listener limits) while existing connections keep the settings they started with.
//! Bind addresses, `enabled`, TLS files and the WebSocket path and message cap need a restart and
//! are reported by key.
//!
//! The listeners share one [`Reloader`]: the daemon calls every listener's [`Reload`] with the same
//! section; each call applies it to all of them, and only the first reports the restart keys.

use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Deserialize;

use super::config::Config;
use super::driver::Timing;
use super::forwarder::Durables;
use super::session::Settings;
use crate::auth::Authenticator;
use crate::limits::ListenerLimits;
use crate::Reload;

/// The STOMP transports, each with its `[stomp.<transport>]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    Tls,
    Ws,
}

impl Transport {
    pub(crate) const ALL: [Transport; 3] = [Transport::Tcp, Transport::Tls, Transport::Ws];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "stomp.tcp",
            Transport::Tls => "stomp.tls",
            Transport::Ws => "stomp.ws",
        }
    }

    pub(crate) fn enabled(self, config: &Config) -> bool {
        match self {
            Transport::Tcp => config.tcp.enabled,
            Transport::Tls => config.tls.enabled,
            Transport::Ws => config.ws.enabled,
        }
    }

    fn limits(self, config: &Config) -> ListenerLimits {
        match self {
            Transport::Tcp => config.tcp.limits,
            Transport::Tls => config.tls.limits,
            Transport::Ws => config.ws.limits,
        }
    }
}

/// What a new connection of one listener gets.
pub(crate) struct Live {
    pub settings: Arc<Settings>,
    pub limits: ListenerLimits,
    pub timing: Timing,
}

/// The [`Live`] settings of every transport for `config`.
pub(crate) fn build(
    config: &Config,
    durables: &Durables,
) -> anyhow::Result<Vec<(Transport, Arc<Live>)>> {
    let auth = Arc::new(
        Authenticator::new(config.auth.clone())
            .context("stomp.auth")?
            .for_protocol(core_bus::Protocol::Stomp),
    );
    config
        .deadlines
        .validate("stomp")
        .map_err(anyhow::Error::msg)?;
    let ignore_credentials =
        !config.auth.required && config.auth.tokens.is_empty() && config.auth.jwt.is_none();
    let timing = Timing {
        deadlines: config.deadlines,
        write_batch: config.write_batch.max(1),
    };
    Ok(Transport::ALL
        .into_iter()
        .map(|transport| {
            let limits = transport.limits(config);
            let settings = Arc::new(Settings {
                limits: config.limits,
                transactions: config.transactions,
                heart_beat: config.heart_beat,
                unknown_destination: config.unknown_destination,
                default_prefetch: config.default_prefetch,
                max_subscriptions: limits.max_subscriptions_per_connection,
                auth: auth.clone(),
                ignore_credentials,
                server: format!("gatewayd/{}", env!("CARGO_PKG_VERSION")),
                durables: durables.clone(),
                max_durable_subscriptions: config.max_durable_subscriptions,
            });
            let live = Live {
                settings,
                limits,
                timing,
            };
            (transport, Arc::new(live))
        })
        .collect())
}

/// Keys of `[stomp]` that changed from `old` to `new` but only take effect after a restart.
pub(crate) fn restart_keys(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let mut check = |changed: bool, key: &str| {
        if changed {
            keys.push(key.to_owned());
        }
    };
    check(old.tcp.enabled != new.tcp.enabled, "stomp.tcp.enabled");
    check(old.tcp.address != new.tcp.address, "stomp.tcp.address");
    check(old.tls.enabled != new.tls.enabled, "stomp.tls.enabled");
    check(old.tls.address != new.tls.address, "stomp.tls.address");
    check(old.tls.tls != new.tls.tls, "stomp.tls.tls");
    check(old.ws.enabled != new.ws.enabled, "stomp.ws.enabled");
    check(old.ws.address != new.ws.address, "stomp.ws.address");
    check(old.ws.path != new.ws.path, "stomp.ws.path");
    check(old.ws.tls != new.ws.tls, "stomp.ws.tls");
    check(
        old.ws.max_message_bytes != new.ws.max_message_bytes,
        "stomp.ws.max_message_bytes",
    );
    keys
}

/// The running listeners' settings and the configuration they came from.
pub(crate) struct Reloader {
    current: Mutex<Config>,
    durables: Durables,
    listeners: Vec<(Transport, Arc<ArcSwap<Live>>)>,
}

impl Reloader {
    pub(crate) fn new(
        current: Config,
        durables: Durables,
        listeners: Vec<(Transport, Arc<ArcSwap<Live>>)>,
    ) -> Reloader {
        Reloader {
            current: Mutex::new(current),
            durables,
            listeners,
        }
    }

    fn apply(&self, section: &toml::Value) -> Result<Vec<String>, String> {
        let next = Config::deserialize(section.clone()).map_err(|e| e.to_string())?;
        // Built again even when the section is unchanged: gatewayd also reloads a section whose auth files (a JWT
        // public key) changed under the same path.
        let mut current = self.current.lock();
        let built = build(&next, &self.durables).map_err(|e| format!("{e:#}"))?;
        for (transport, swap) in &self.listeners {
            if let Some((_, live)) = built.iter().find(|(t, _)| t == transport) {
                swap.store(live.clone());
            }
        }
        let restart = restart_keys(&current, &next);
        tracing::info!(?restart, "stomp: settings reloaded for new connections");
        *current = next;
        Ok(restart)
    }
}

/// One listener's [`Reload`] handle on the shared [`Reloader`].
pub(crate) struct Handle(pub Arc<Reloader>);

impl Reload for Handle {
    fn reload(&self, section: &toml::Value) -> Result<Vec<String>, String> {
        self.0.apply(section)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    fn reloader(config: &Config) -> (Reloader, Arc<ArcSwap<Live>>) {
        let durables = Durables::new(CancellationToken::new());
        let built = build(config, &durables).unwrap();
        let tcp = Arc::new(ArcSwap::new(built[0].1.clone()));
        let reloader = Reloader::new(
            config.clone(),
            durables,
            vec![(Transport::Tcp, tcp.clone())],
        );
        (reloader, tcp)
    }

    fn section(config: &Config) -> toml::Value {
        toml::Value::try_from(config).unwrap()
    }

    #[test]
    fn limits_apply_and_addresses_need_a_restart() {
        let old = Config::default();
        let (reloader, tcp) = reloader(&old);
        let before = tcp.load_full();
        let mut new = old.clone();
        new.limits.max_headers = 7;
        new.default_prefetch = 3;
        new.tcp.limits.max_connections = 2;
        new.tcp.address = "127.0.0.1:1".parse().unwrap();
        new.tls.tls.self_signed = !old.tls.tls.self_signed;
        let restart = reloader.apply(&section(&new)).unwrap();
        assert_eq!(restart, ["stomp.tcp.address", "stomp.tls.tls"]);
        let after = tcp.load_full();
        assert_eq!(after.settings.limits.max_headers, 7);
        assert_eq!(after.settings.default_prefetch, 3);
        assert_eq!(after.limits.max_connections, 2);
        assert_eq!(
            before.settings.limits.max_headers, 100,
            "old connections keep theirs"
        );
        assert_eq!(
            reloader.apply(&section(&new)).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            tcp.load_full().settings.limits.max_headers,
            7,
            "the same section again builds the same settings"
        );
    }

    #[test]
    fn a_bad_section_is_refused_and_changes_nothing() {
        let (reloader, tcp) = reloader(&Config::default());
        let before = tcp.load_full();
        let bad: toml::Value = toml::from_str("write_batch = \"many\"").unwrap();
        assert!(reloader.apply(&bad).is_err());
        let unknown: toml::Value = toml::from_str("no_such_key = 1").unwrap();
        assert!(reloader.apply(&unknown).is_err());
        assert!(Arc::ptr_eq(&before, &tcp.load_full()));
    }
}
