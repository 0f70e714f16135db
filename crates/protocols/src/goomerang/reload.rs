//! Hot reload of `[goomerang]`: new [`Settings`] (identity and ACLs, frame limits, wrapper kind, send topics,
//! foreign kinds, listener limits) for connections accepted afterwards; connections already open keep theirs.
//! What only a restart applies is declared in [`Config::restart_only`].

use std::sync::Arc;

use super::config::Config;
use super::listener::{Shared, LISTENER_NAME};
use super::settings::Settings;
use crate::config::ConfigError;
use crate::{Reload, Reloaded};

/// Applies a new `[goomerang]` section to the running listener.
pub(super) struct Reloader {
    shared: Arc<Shared>,
    /// The section the listener was started with: what only a restart changes is compared against it.
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
            applied: vec![LISTENER_NAME.to_owned()],
            restart_needed: self.started.restart_only(next),
        })
    }
}
