//! The proxy responder: the backend proxy answering requests from every protocol. An in-process bus
//! subscriber on the topics the `[[messageloop.proxy]]` routes claim ([`topics`]) takes each request that
//! carries a reply inbox, calls the backend the first matching route names, and publishes the answer (or an
//! error reply, [`ERROR_HEADER`]) to that inbox with the request's correlation id. Requests no route claims
//! are left to the bus's other responders. MessageLoop clients' own RPCs never get here: their session calls
//! the backend itself and publishes nothing.
//!
//! `messageloop::start` starts one [`Responder`], with or without MessageLoop listeners; a reload of
//! `[messageloop]` replaces its generation ([`Responder::apply`]: the new one subscribes before the old one
//! stops taking requests; the old one still answers its open calls).

mod reply;
mod run;
mod topics;

use core_bus::config::{QueueLimits, SlowConsumerPolicy};
use core_bus::{Bus, ConnectionId, MailboxOptions, Origin, Protocol};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

pub use reply::ERROR_HEADER;

use super::{Proxies, ProxyConfig};

/// The name a reload report gives the responder when no MessageLoop listener runs.
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
}

impl Responder {
    /// Starts the responder for `proxies` (it idles without proxies until a reload adds some).
    pub fn start(
        proxies: &[ProxyConfig],
        bus: Bus,
        shutdown: CancellationToken,
    ) -> Result<Responder, String> {
        let responder = Responder {
            bus,
            shutdown,
            current: Mutex::new(None),
        };
        responder.apply(proxies)?;
        Ok(responder)
    }

    /// Starts a generation for `proxies` (when a route claims anything) and stops the previous one.
    pub fn apply(&self, proxies: &[ProxyConfig]) -> Result<(), String> {
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
