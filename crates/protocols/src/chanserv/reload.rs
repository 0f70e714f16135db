//! Hot reload of `[chanserv]`: new [`Settings`] (identity and ACLs, service name, compression, frame and
//! connection limits, timeouts) on the same host id and port counter, for connections accepted afterwards;
//! open connections keep theirs. What only a restart applies is declared in [`Config::restart_only`].

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::config::Config;
use super::listener::LISTENER_NAME;
use super::settings::Settings;
use crate::{Reload, SingleListenerReload};

/// Applies a new `[chanserv]` section to the running listener, keeping the host id and port counter.
pub(super) fn reloader(settings: Arc<ArcSwap<Settings>>, started: &Config) -> impl Reload<Config> {
    SingleListenerReload::new(LISTENER_NAME, started, Config::restart_only, move |next| {
        let current = settings.load();
        let new = Settings::new(next, current.link.host, current.link.ports.clone())?;
        settings.store(Arc::new(new));
        Ok(())
    })
}
