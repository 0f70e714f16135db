//! Firing the lifecycle hooks of [`crate::messageloop::proxy::hooks`] for this session: who the session
//! is to a backend, and the OnDisconnected call when a connected session ends.

use super::*;
use crate::messageloop::proxy::hooks::{Hook, HookCall};
use crate::messageloop::proxy::route::{Target, DISCONNECT};

impl Session {
    /// The user id backends see: the identity's name, empty before Connect.
    pub(super) fn user_id(&self) -> String {
        self.identity()
            .map(|identity| identity.name.clone())
            .unwrap_or_default()
    }

    /// Hands `hook` to the backend `target` when a route named one; never waits.
    pub(super) fn fire_hook(&self, target: Option<Target>, hook: Hook) {
        if let Some(target) = target {
            self.context.hooks.fire(HookCall {
                proxy: target.proxy,
                timeout: target.timeout,
                hook,
            });
        }
    }

    /// OnDisconnected, for a session that got as far as Connected.
    pub(super) fn fire_disconnected(&self) {
        if self.identity().is_none() {
            return;
        }
        let hook = Hook::Disconnected {
            session_id: self.session_id.clone(),
            username: self.user_id(),
        };
        self.fire_hook(self.context.router.route("", DISCONNECT), hook);
    }
}
