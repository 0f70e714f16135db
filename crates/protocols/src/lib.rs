//! gatewayd's protocol adapters and what they share. Every adapter follows the same contract: a listener is
//! started from its config section with the shared [`Services`], returns a [`RunningListener`] that reports its
//! bound address, registers each connection in the [`ConnectionRegistry`], authenticates through an
//! [`auth::Authenticator`], accepts new settings through [`Reload`], and on [`Services::shutdown`] stops accepting,
//! drains, and closes connections with the protocol's own goodbye.

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
pub mod stomp;
pub mod tls;
pub mod ws;

use std::net::SocketAddr;

use core_bus::{Bus, Protocol};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use connections::{CloseCause, ConnectionGuard, ConnectionInfo, ConnectionRegistry, Slot};

/// What every listener gets from the daemon.
#[derive(Clone)]
pub struct Services {
    pub bus: Bus,
    pub connections: ConnectionRegistry,
    /// Cancelled when the daemon shuts down: stop accepting, say goodbye, return.
    pub shutdown: CancellationToken,
}

/// Applies a new version of a listener's own config section at runtime.
pub trait Reload: Send + Sync {
    /// Applies what can change without a restart (limits, auth, ACLs) and returns the keys that changed but
    /// need a restart (addresses, TLS files).
    fn reload(&self, section: &toml::Value) -> Result<Vec<String>, String>;
}

/// The keys of `changes` whose flag is set: what a [`Reload`] reports as needing a restart.
pub(crate) fn restart_needed(changes: &[(&str, bool)]) -> Vec<String> {
    changes
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| (*key).to_owned())
        .collect()
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
    pub reload: Option<Box<dyn Reload>>,
}
