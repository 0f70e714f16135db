//! Hot reload of `[loom]`: new [`Settings`] (auth, limits, topic prefix, reject delay) for the connections and
//! streams opened afterwards; open streams keep theirs. What only a restart applies is declared in
//! [`Config::restart_only`].

use std::sync::Arc;

use super::config::Config;
use super::driver::Shared;
use super::listener::LISTENER;
use super::settings::Settings;
use crate::{Reload, SingleListenerReload};

/// Applies a new `[loom]` section to the running endpoint.
pub(super) fn reloader(shared: Arc<Shared>, started: &Config) -> impl Reload<Config> {
    SingleListenerReload::new(LISTENER, started, Config::restart_only, move |next| {
        shared.settings.store(Arc::new(Settings::new(next)?));
        Ok(())
    })
}
