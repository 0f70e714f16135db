//! Hot reload of `[chanserv]`: new [`Settings`] (identity and ACLs, service name, compression, frame and
//! connection limits, timeouts) on the same host id and port counter, for connections accepted afterwards;
//! open connections keep theirs. What only a restart applies is declared in [`Config::restart_only`].

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::config::Config;
use super::listener::LISTENER_NAME;
use super::settings::Settings;
use crate::config::ConfigError;
use crate::{Reload, Reloaded};

/// Applies a new `[chanserv]` section to the running listener.
pub(super) struct Reloader {
    settings: Arc<ArcSwap<Settings>>,
    /// The section the listener was started with: what only a restart changes is compared against it.
    started: Config,
}

impl Reloader {
    pub fn new(settings: Arc<ArcSwap<Settings>>, started: &Config) -> Reloader {
        Reloader {
            settings,
            started: started.clone(),
        }
    }
}

impl Reload<Config> for Reloader {
    fn reload(&self, next: &Config) -> Result<Reloaded, ConfigError> {
        let current = self.settings.load();
        let settings = Settings::new(next, current.link.host, current.link.ports.clone())?;
        self.settings.store(Arc::new(settings));
        Ok(Reloaded {
            applied: vec![LISTENER_NAME.to_owned()],
            restart_needed: self.started.restart_only(next),
        })
    }
}
