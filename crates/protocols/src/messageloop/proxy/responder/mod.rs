//! The proxy responder: the backend proxy answering requests from every protocol. An in-process bus
//! subscriber on the topics the `[[messageloop.proxy]]` routes claim ([`topics`]) takes each request that
//! carries a reply inbox, calls the backend the first matching route names, and publishes the answer (or an
//! error reply, [`ERROR_HEADER`]) to that inbox with the request's correlation id. Requests no route claims
//! are left to the bus's other responders. MessageLoop clients' own RPCs never get here: their session calls
//! the backend itself and publishes nothing.
//!
//! The daemon starts one [`Responder`]; a reload of `[messageloop]` replaces its generation (the new one
//! subscribes before the old one stops taking requests; the old one still answers its open calls). Its reload
//! rides on a MessageLoop listener's ([`Responder::register`]), so reload reports name the listeners as before.

mod reply;
mod run;
mod topics;

use core_bus::config::{QueueLimits, SlowConsumerPolicy};
use core_bus::{Bus, ConnectionId, MailboxOptions, Origin, Protocol};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

pub use reply::ERROR_HEADER;

use super::{Proxies, ProxyConfig};
use crate::messageloop::Config;
use crate::Reload;

/// The name the responder's reload goes by (its section is `[messageloop]`).
pub const NAME: &str = "messageloop.proxy";
/// Counter of requests the responder took, by `outcome`.
pub const REQUESTS: &str = "gatewayd_proxy_bus_requests_total";

/// Requests waiting in the responder's queue; past it the oldest are dropped (counted as
/// `queue_full_drop_oldest`, protocol `internal`): the responder never holds publishers back.
const QUEUE: QueueLimits = QueueLimits {
    max_messages: 4096,
    max_bytes: 16 << 20,
};

/// The running responder; cancelling the daemon's shutdown token ends it.
pub struct Responder {
    bus: Bus,
    shutdown: CancellationToken,
    /// Stops the running generation; `None` while no route claims a topic.
    current: Mutex<Option<CancellationToken>>,
    /// Whether a MessageLoop listener was started (they report their own restart-only keys).
    listeners_started: bool,
}

impl Responder {
    /// Starts the responder for `config.proxy` (it idles without proxies until a reload adds some).
    pub fn start(
        config: &Config,
        bus: Bus,
        shutdown: CancellationToken,
    ) -> Result<Responder, String> {
        let responder = Responder {
            bus,
            shutdown,
            current: Mutex::new(None),
            listeners_started: config.ws.enabled || config.grpc.enabled,
        };
        responder.apply(&config.proxy)?;
        Ok(responder)
    }

    /// Adds the responder's reload to the daemon's `reloads` (listener name, reload): after the first
    /// MessageLoop listener's own, or under [`NAME`] when no MessageLoop listener runs.
    pub fn register(self, reloads: &mut Vec<(String, Option<Box<dyn Reload>>)>) {
        let listener = reloads
            .iter_mut()
            .find(|(name, reload)| name.starts_with("messageloop.") && reload.is_some());
        match listener {
            Some((_, slot)) => {
                *slot = slot.take().map(|listener| {
                    Box::new(Chained {
                        listener,
                        responder: self,
                    }) as Box<dyn Reload>
                });
            }
            None => reloads.push((NAME.to_owned(), Some(Box::new(self)))),
        }
    }

    /// Starts a generation for `proxies` (when a route claims anything) and stops the previous one.
    fn apply(&self, proxies: &[ProxyConfig]) -> Result<(), String> {
        let routes: Vec<_> = proxies.iter().flat_map(|p| p.routes.clone()).collect();
        let patterns = topics::patterns(&routes);
        let next = if patterns.is_empty() {
            None
        } else {
            let proxies = Proxies::new(proxies)?;
            let origin = Origin {
                protocol: Protocol::Internal,
                connection: ConnectionId::next(),
            };
            let options = MailboxOptions {
                limits: QUEUE,
                policy: SlowConsumerPolicy::DropOldest,
                stall_publishers: false,
            };
            let mut mailbox = self.bus.mailbox_with(origin, options);
            for pattern in patterns {
                mailbox
                    .subscribe(pattern)
                    .map_err(|error| format!("messageloop.proxy: {error}"))?;
            }
            let stop = self.shutdown.child_token();
            let generation = run::Generation {
                bus: self.bus.clone(),
                mailbox,
                proxies,
                stop: stop.clone(),
                shutdown: self.shutdown.clone(),
            };
            tokio::spawn(generation.run());
            Some(stop)
        };
        if let Some(previous) = std::mem::replace(&mut *self.current.lock(), next) {
            previous.cancel();
        }
        Ok(())
    }
}

impl Reload for Responder {
    fn reload(&self, section: &toml::Value) -> Result<Vec<String>, String> {
        let next: Config = section
            .clone()
            .try_into()
            .map_err(|error| format!("messageloop: {error}"))?;
        next.validate().map_err(|error| error.to_string())?;
        self.apply(&next.proxy)?;
        // Without a running listener nobody else says that enabling one needs a restart.
        let started = self.listeners_started;
        Ok(crate::restart_needed(&[
            ("messageloop.ws.enabled", !started && next.ws.enabled),
            ("messageloop.grpc.enabled", !started && next.grpc.enabled),
        ]))
    }
}

/// A listener's reload, then the responder's when the listener's succeeded.
struct Chained {
    listener: Box<dyn Reload>,
    responder: Responder,
}

impl Reload for Chained {
    fn reload(&self, section: &toml::Value) -> Result<Vec<String>, String> {
        let mut restart = self.listener.reload(section)?;
        restart.extend(self.responder.reload(section)?);
        Ok(restart)
    }
}
