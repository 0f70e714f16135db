//! Hot reload of `[messageloop]`: new [`Settings`] for the connections and streams that start afterwards (open
//! sessions keep theirs), and a new proxy responder generation. What only a restart applies is declared in
//! [`Config::restart_only`].

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::config::Config;
use super::proxy::responder::{self, Responder};
use super::settings::Settings;
use crate::config::ConfigError;
use crate::{Reload, Reloaded};

/// Applies a new `[messageloop]` section to the running listeners and the proxy responder.
pub(super) struct Reloader {
    /// The section the listeners were started with: what only a restart changes is compared against it.
    started: Config,
    /// Each running listener's name and settings.
    listeners: Vec<(&'static str, Arc<ArcSwap<Settings>>)>,
    responder: Responder,
}

impl Reloader {
    pub fn new(
        started: &Config,
        listeners: Vec<(&'static str, Arc<ArcSwap<Settings>>)>,
        responder: Responder,
    ) -> Reloader {
        Reloader {
            started: started.clone(),
            listeners,
            responder,
        }
    }
}

impl Reload<Config> for Reloader {
    fn reload(&self, next: &Config) -> Result<Reloaded, ConfigError> {
        next.validate()?;
        let settings = self
            .listeners
            .iter()
            .map(|(_, swap)| swap.load().reloaded(next))
            .collect::<Result<Vec<_>, _>>()?;
        for ((_, swap), settings) in self.listeners.iter().zip(settings) {
            swap.store(Arc::new(settings));
        }
        self.responder
            .apply(&next.proxy)
            .map_err(|error| ConfigError::new("messageloop.proxy", error))?;
        let applied = match self.listeners.is_empty() {
            true => vec![responder::NAME.to_owned()],
            false => self
                .listeners
                .iter()
                .map(|(name, _)| (*name).to_owned())
                .collect(),
        };
        Ok(Reloaded {
            applied,
            restart_needed: self.started.restart_only(next),
        })
    }
}
