//! The fire-and-forget lifecycle hooks (OnConnected, OnSubscribed, OnUnsubscribed, OnDisconnected): a
//! session hands each to [`Hooks::fire`], which runs it in its own task under the backend's timeout, at most
//! [`MAX_HOOKS_IN_FLIGHT`] at once per listener; one over that bound is dropped and counted, never waited for.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::Backend;

/// Most hook calls of one listener running at once.
pub const MAX_HOOKS_IN_FLIGHT: usize = 1024;

/// Hook calls that were not made, by reason (`over_bound`, `failed`, `timeout`).
pub const HOOKS_DROPPED: &str = "gatewayd_messageloop_proxy_hooks_dropped_total";

/// One lifecycle event for a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// Route `("", "$authenticate")`, after that backend accepted the Connect token. `username` is the
    /// Connect `client_id`, as upstream sends it.
    Connected {
        session_id: String,
        username: String,
    },
    /// Route `(channel, "subscribe")`, after the subscription was made.
    Subscribed {
        session_id: String,
        channel: String,
        username: String,
    },
    /// Route `(channel, "unsubscribe")`, after an Unsubscribe removed the subscription.
    Unsubscribed {
        session_id: String,
        channel: String,
        username: String,
    },
    /// Route `("", "disconnect")`, when a connected session ends.
    Disconnected {
        session_id: String,
        username: String,
    },
}

/// A hook for the backend `proxy` (index in `messageloop.proxy`) with that entry's timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCall {
    pub proxy: usize,
    pub timeout: Duration,
    pub hook: Hook,
}

/// Where sessions fire hooks: the listener's backends and the in-flight bound.
pub struct Hooks {
    backends: Vec<Arc<Backend>>,
    in_flight: Arc<Semaphore>,
}

impl Hooks {
    pub(super) fn new(backends: Vec<Arc<Backend>>) -> Hooks {
        Hooks::bounded(backends, MAX_HOOKS_IN_FLIGHT)
    }

    fn bounded(backends: Vec<Arc<Backend>>, bound: usize) -> Hooks {
        Hooks {
            backends,
            in_flight: Arc::new(Semaphore::new(bound)),
        }
    }

    /// No backends: every hook is ignored (sessions built without a listener).
    pub fn none() -> Hooks {
        Hooks::new(Vec::new())
    }

    /// Starts `call` and returns at once, true when it started; outside a Tokio runtime, for an unknown
    /// backend, or over the bound, it is dropped.
    pub fn fire(&self, call: HookCall) -> bool {
        let Some(backend) = self.backends.get(call.proxy).cloned() else {
            return false;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            metrics::counter!(HOOKS_DROPPED, "reason" => "over_bound").increment(1);
            tracing::debug!(
                proxy = call.proxy,
                "messageloop: hook dropped, too many in flight"
            );
            return false;
        };
        runtime.spawn(async move {
            let reason = match tokio::time::timeout(call.timeout, backend.hook(&call.hook)).await {
                Ok(Ok(())) => None,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "messageloop: hook call failed");
                    Some("failed")
                }
                Err(_) => Some("timeout"),
            };
            if let Some(reason) = reason {
                metrics::counter!(HOOKS_DROPPED, "reason" => reason).increment(1);
            }
            drop(permit);
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messageloop::proxy::ProxyConfig;

    #[tokio::test]
    async fn hooks_over_the_bound_are_dropped_not_queued() {
        // Accepts connections (the kernel's backlog) and never answers: the first hook stays in flight.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config: ProxyConfig = toml::from_str(&format!(
            "name = \"h\"\nendpoint = \"http://{}/\"\nroutes = [{{ channel = \"*\", method = \"*\" }}]\n",
            silent.local_addr().unwrap()
        ))
        .unwrap();
        let hooks = Hooks::bounded(vec![Arc::new(Backend::new(&config).unwrap())], 1);
        let call = HookCall {
            proxy: 0,
            timeout: Duration::from_secs(5),
            hook: Hook::Disconnected {
                session_id: "s".into(),
                username: "u".into(),
            },
        };
        assert!(hooks.fire(call.clone()));
        assert!(!hooks.fire(call.clone()));
        assert!(!hooks.fire(HookCall { proxy: 1, ..call }));
    }
}
