//! Hot reload of `[goomerang]`: new [`Settings`] (identity and ACLs, frame limits, wrapper kind, send topics,
//! foreign kinds, listener limits) for connections accepted afterwards; connections already open keep theirs.
//! What only a restart applies is declared in [`Config::restart_only`].

use std::sync::Arc;

use super::config::Config;
use super::listener::{Shared, LISTENER_NAME};
use super::settings::Settings;
use crate::{Reload, SingleListenerReload};

/// Applies a new `[goomerang]` section to the running listener.
pub(super) fn reloader(shared: Arc<Shared>, started: &Config) -> impl Reload<Config> {
    SingleListenerReload::new(LISTENER_NAME, started, Config::restart_only, move |next| {
        shared.settings.store(Arc::new(Settings::new(next)?));
        Ok(())
    })
}
