//! Hot reload of `[loom]`: new [`Settings`] (auth, limits, topic prefix, reject delay) for the connections and
//! streams opened afterwards; open streams keep theirs. What only a restart applies is declared in
//! [`Config::restart_only`].

use std::sync::Arc;

use super::config::Config;
use super::driver::Shared;
use super::listener::LISTENER;
use super::settings::Settings;
use crate::config::ConfigError;
use crate::{Reload, Reloaded};

/// Applies a new `[loom]` section to the running endpoint.
pub(super) struct Reloader {
    shared: Arc<Shared>,
    /// The section the endpoint was started with: what only a restart changes is compared against it.
    started: Config,
}

impl Reloader {
    pub fn new(shared: Arc<Shared>, started: &Config) -> Reloader {
        Reloader {
            shared,
            started: started.clone(),
        }
    }
}

impl Reload<Config> for Reloader {
    fn reload(&self, next: &Config) -> Result<Reloaded, ConfigError> {
        self.shared.settings.store(Arc::new(Settings::new(next)?));
        Ok(Reloaded {
            applied: vec![LISTENER.to_owned()],
            restart_needed: self.started.restart_only(next),
        })
    }
}
