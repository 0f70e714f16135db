//! Starts every configured protocol listener with the shared services, and keeps each protocol's reload typed
//! by its own config section.

use protocols::{chanserv, goomerang, loom, messageloop, mqtt, stomp};
use protocols::{Reload, RunningListener, Services, Started};

use crate::config::Config;

/// Each protocol's reload (`None`: nothing of it runs, so a change of its section needs a restart).
pub struct Reloads {
    pub stomp: Option<Box<dyn Reload<stomp::Config>>>,
    pub goomerang: Option<Box<dyn Reload<goomerang::Config>>>,
    pub loom: Option<Box<dyn Reload<loom::Config>>>,
    pub chanserv: Option<Box<dyn Reload<chanserv::Config>>>,
    pub messageloop: Option<Box<dyn Reload<messageloop::Config>>>,
    pub mqtt: Option<Box<dyn Reload<mqtt::Config>>>,
}

/// Starts what `config` enables, in a fixed order: the listeners, and each protocol's reload.
pub async fn start_all(
    config: &Config,
    services: &Services,
) -> anyhow::Result<(Vec<RunningListener>, Reloads)> {
    let mut running = Vec::new();
    let reloads = Reloads {
        stomp: keep(&mut running, stomp::start(&config.stomp, services).await?),
        goomerang: keep(
            &mut running,
            goomerang::start(&config.goomerang, services).await?,
        ),
        loom: keep(&mut running, loom::start(&config.loom, services).await?),
        chanserv: keep(
            &mut running,
            chanserv::start(&config.chanserv, services).await?,
        ),
        messageloop: keep(
            &mut running,
            messageloop::start(&config.messageloop, services).await?,
        ),
        mqtt: keep(&mut running, mqtt::start(&config.mqtt, services).await?),
    };
    Ok((running, reloads))
}

/// Adds a protocol's listeners to `running` and returns its reload.
fn keep<C>(running: &mut Vec<RunningListener>, started: Started<C>) -> Option<Box<dyn Reload<C>>> {
    running.extend(started.listeners);
    started.reload
}
