//! Hot reload of the `[stomp]` section. Each running STOMP listener reads its [`Live`] settings from an
//! [`ArcSwap`] on every accept, so a reload changes what new connections get (frame and transaction limits,
//! heart-beat policy, destinations policy, prefetch, timeouts, auth tokens, JWT keys and ACLs, listener limits)
//! while existing connections keep the settings they started with. What only a restart applies is declared in
//! [`Config::restart_only`], compared with the section applied last.

use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::config::Config;
use super::settings::{build, Live, Transport};
use crate::config::ConfigError;
use crate::{Reload, Reloaded};

/// The running listeners' settings and the configuration they came from.
pub(crate) struct Reloader {
    current: Mutex<Config>,
    listeners: Vec<(Transport, Arc<ArcSwap<Live>>)>,
}

impl Reloader {
    pub(crate) fn new(
        current: Config,
        listeners: Vec<(Transport, Arc<ArcSwap<Live>>)>,
    ) -> Reloader {
        Reloader {
            current: Mutex::new(current),
            listeners,
        }
    }

    fn apply(&self, next: &Config) -> Result<Vec<String>, ConfigError> {
        // Built again even when the section is unchanged: gatewayd also reloads a section whose auth files (a JWT
        // public key) changed under the same path.
        let mut current = self.current.lock();
        let built = build(next)?;
        for (transport, swap) in &self.listeners {
            if let Some((_, live)) = built.iter().find(|(t, _)| t == transport) {
                swap.store(live.clone());
            }
        }
        let restart = current.restart_only(next);
        tracing::info!(?restart, "stomp: settings reloaded for new connections");
        *current = next.clone();
        Ok(restart)
    }
}

impl Reload<Config> for Reloader {
    fn reload(&self, next: &Config) -> Result<Reloaded, ConfigError> {
        Ok(Reloaded {
            restart_needed: self.apply(next)?,
            applied: self
                .listeners
                .iter()
                .map(|(transport, _)| transport.name().to_owned())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reloader(config: &Config) -> (Reloader, Arc<ArcSwap<Live>>) {
        let built = build(config).unwrap();
        let tcp = Arc::new(ArcSwap::new(built[0].1.clone()));
        let reloader = Reloader::new(config.clone(), vec![(Transport::Tcp, tcp.clone())]);
        (reloader, tcp)
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
        let restart = reloader.apply(&new).unwrap();
        assert_eq!(restart, ["stomp.tcp.address", "stomp.tls.tls"]);
        let after = tcp.load_full();
        assert_eq!(after.settings.limits.max_headers, 7);
        assert_eq!(after.settings.default_prefetch, 3);
        assert_eq!(after.limits.max_connections, 2);
        assert_eq!(
            before.settings.limits.max_headers, 100,
            "old connections keep theirs"
        );
        assert_eq!(reloader.apply(&new).unwrap(), Vec::<String>::new());
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
        let mut bad = Config::default();
        bad.deadlines.write_ms = 0;
        assert!(reloader.apply(&bad).is_err());
        assert!(Arc::ptr_eq(&before, &tcp.load_full()));
    }
}
