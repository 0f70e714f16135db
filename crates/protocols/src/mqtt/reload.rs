//! Hot reload of `[mqtt]`: limits, auth and deadlines apply to connections accepted afterwards, the retained
//! and session-store bounds at once. What only a restart applies is declared in [`Config::restart_only`].

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::config::Config;
use super::session::Shared;
use super::settings::{Live, Transport};
use crate::config::ConfigError;
use crate::{Reload, Reloaded};

/// Applies a new `[mqtt]` section to every running MQTT listener.
pub(super) struct Reloader {
    /// The section the listeners were started with: what only a restart changes is compared against it.
    pub started: Config,
    pub listeners: Vec<(Transport, Arc<ArcSwap<Live>>)>,
    pub shared: Shared,
}

impl Reload<Config> for Reloader {
    fn reload(&self, next: &Config) -> Result<Reloaded, ConfigError> {
        let lives = self
            .listeners
            .iter()
            .map(|(transport, live)| Ok((live, Live::new(next, *transport)?)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        for (live, next_live) in lives {
            live.store(Arc::new(next_live));
        }
        self.shared
            .retained
            .set_limits(next.max_retained_messages, next.max_retained_bytes);
        self.shared.sessions.set_max_saved(next.max_stored_sessions);
        Ok(Reloaded {
            applied: self
                .listeners
                .iter()
                .map(|(transport, _)| transport.name().to_owned())
                .collect(),
            restart_needed: self.started.restart_only(next),
        })
    }
}
