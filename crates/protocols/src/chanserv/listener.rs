//! The chanserv TCP listener (`chanserv.tcp`): binds, accepts connections on the shared [`accept`] path and hands
//! each one, registered, to its own tokio task running [`driver::run`].
//!
//! The process gets one random AstraNet host id and one port counter, shared by every connection, like one Go
//! AstraNet node. On shutdown the listener stops accepting and every connection closes its streams (FIN2) before
//! its socket.
//!
//! Each accepted connection takes the [`Settings`] in effect at that moment ([`super::reload`] swaps them).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use core_bus::Protocol;
use tokio::net::TcpListener;

use super::astranet::{HostId, PortCounter};
use super::config::Config;
use super::driver;
use super::reload;
use super::settings::Settings;
use crate::accept::{self, Accepted};
use crate::{RunningListener, Services, Started};

/// Config path of the listener.
pub const LISTENER_NAME: &str = "chanserv.tcp";

/// Binds `config.address` and starts accepting.
pub async fn start(config: &Config, services: &Services) -> anyhow::Result<Started<Config>> {
    if !config.enabled {
        return Ok(Started::nothing());
    }
    let settings = Settings::new(config, random_host(), PortCounter::new())?;
    let listener = TcpListener::bind(config.address)
        .await
        .with_context(|| format!("chanserv.address {}", config.address))?;
    let local_addr = listener.local_addr()?;
    tracing::info!(
        address = %local_addr,
        host = %settings.link.host,
        service = settings.link.service.as_str(),
        "chanserv listener bound"
    );
    let settings = Arc::new(ArcSwap::from_pointee(settings));
    let (accepting, pre_auth, for_admit) = (settings.clone(), settings.clone(), services.clone());
    let task = tokio::spawn(accept::run(
        listener,
        LISTENER_NAME,
        services.shutdown.clone(),
        move || pre_auth.load().deadlines.pre_auth(),
        move |accepted| admit(accepted, &accepting, &for_admit),
    ));
    Ok(Started {
        listeners: vec![RunningListener {
            name: LISTENER_NAME.to_owned(),
            protocol: Protocol::Chanserv,
            transport: "tcp",
            local_addr,
            task,
        }],
        reload: Some(Box::new(reload::reloader(settings, config))),
    })
}

/// A random non-zero node id below 2^63, as AstraNet draws them.
fn random_host() -> HostId {
    loop {
        let id = rand::random::<u64>() >> 1;
        if id != 0 {
            return HostId(id);
        }
    }
}

/// Registers a socket just accepted, or refuses it when the listener is full.
fn admit(
    accepted: Accepted,
    settings: &ArcSwap<Settings>,
    services: &Services,
) -> Option<impl Future<Output = ()>> {
    let settings = settings.load_full();
    let registered = services.connections.register(
        Protocol::Chanserv,
        LISTENER_NAME,
        accepted.peer,
        settings.max_connections,
    );
    match registered {
        Ok(guard) => Some(driver::run(
            accepted.stream,
            accepted.peer,
            guard,
            settings,
            services.clone(),
        )),
        Err(e) => {
            tracing::warn!(peer = %accepted.peer, error = %e, "chanserv: connection refused");
            None
        }
    }
}
