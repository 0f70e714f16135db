//! gatewayd's protocol adapters and what they share. Every adapter follows the same contract
//! (`docs/architecture.md`): `start` takes its typed config section and the shared [`Services`] and returns
//! [`Started`]: a [`RunningListener`] per bound listener and the protocol's [`Reload`]. Each connection registers
//! in the [`ConnectionRegistry`] and authenticates through an [`auth::Authenticator`]; on [`Services::shutdown`]
//! the listeners stop accepting, drain, and close connections with the protocol's own goodbye.

pub mod accept;
pub mod auth;
pub mod chanserv;
pub mod config;
pub mod connections;
pub mod goomerang;
pub mod limits;
pub mod loom;
pub mod messageloop;
pub mod mqtt;
pub mod names;
pub mod protobuf;
pub mod stomp;
pub mod tls;
pub mod ws;

use std::net::SocketAddr;

use core_bus::{Bus, Protocol};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::ConfigError;
pub use connections::{CloseCause, ConnectionGuard, ConnectionInfo, ConnectionRegistry, Slot};

/// What every listener gets from the daemon.
#[derive(Clone)]
pub struct Services {
    pub bus: Bus,
    pub connections: ConnectionRegistry,
    /// Cancelled when the daemon shuts down: stop accepting, say goodbye, return.
    pub shutdown: CancellationToken,
}

/// Applies a new version of one protocol's config section (`C`) to what that protocol runs.
pub trait Reload<C>: Send + Sync {
    /// Applies what can change without a restart (limits, auth, ACLs); a refused section changes nothing.
    fn reload(&self, next: &C) -> Result<Reloaded, ConfigError>;
}

/// What a [`Reload`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// The listeners (and services) that took the new section.
    pub applied: Vec<String>,
    /// Keys that changed but only a restart applies (addresses, TLS files, `enabled`).
    pub restart_needed: Vec<String>,
}

/// The [`Reload`] of a protocol with one listener: `apply` swaps in settings built from the new section (for
/// connections accepted afterwards), and `restart_only` compares it with the section the listener started with.
pub(crate) struct SingleListenerReload<C, F> {
    listener: &'static str,
    started: C,
    restart_only: fn(&C, &C) -> Vec<String>,
    apply: F,
}

impl<C: Clone, F: Fn(&C) -> Result<(), ConfigError>> SingleListenerReload<C, F> {
    pub(crate) fn new(
        listener: &'static str,
        started: &C,
        restart_only: fn(&C, &C) -> Vec<String>,
        apply: F,
    ) -> Self {
        SingleListenerReload {
            listener,
            started: started.clone(),
            restart_only,
            apply,
        }
    }
}

impl<C, F> Reload<C> for SingleListenerReload<C, F>
where
    C: Send + Sync,
    F: Fn(&C) -> Result<(), ConfigError> + Send + Sync,
{
    fn reload(&self, next: &C) -> Result<Reloaded, ConfigError> {
        (self.apply)(next)?;
        Ok(Reloaded {
            applied: vec![self.listener.to_owned()],
            restart_needed: (self.restart_only)(&self.started, next),
        })
    }
}

/// What a protocol's `start` returns: its listeners, and how to reload them (`None`: nothing runs, so any
/// change of the section needs a restart).
pub struct Started<C> {
    pub listeners: Vec<RunningListener>,
    pub reload: Option<Box<dyn Reload<C>>>,
}

impl<C> Started<C> {
    /// Nothing started: the protocol is disabled.
    pub fn nothing() -> Started<C> {
        Started {
            listeners: Vec::new(),
            reload: None,
        }
    }
}

/// A started listener.
pub struct RunningListener {
    /// Config path of the listener, such as `stomp.tcp`.
    pub name: String,
    pub protocol: Protocol,
    /// `tcp`, `tls`, `ws`, `quic`, `grpc`, …
    pub transport: &'static str,
    /// The address actually bound (tests bind port 0).
    pub local_addr: SocketAddr,
    /// Finishes once the listener and all its connections are closed after shutdown.
    pub task: JoinHandle<()>,
}
