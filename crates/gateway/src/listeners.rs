//! Starts every configured protocol listener with the shared services.

use protocols::{RunningListener, Services};

use crate::config::Config;

/// Starts the listeners `config` enables, in a fixed order.
pub async fn start_all(
    config: &Config,
    services: &Services,
) -> anyhow::Result<Vec<RunningListener>> {
    let mut running = Vec::new();
    running.extend(protocols::stomp::start(&config.stomp, services).await?);
    running.extend(protocols::goomerang::start(&config.goomerang, services).await?);
    running.extend(protocols::loom::start(&config.loom, services).await?);
    if config.chanserv.enabled {
        running.push(protocols::chanserv::listener::start(&config.chanserv, services).await?);
    }
    running.extend(protocols::messageloop::start(&config.messageloop, services).await?);
    running.extend(protocols::mqtt::start(&config.mqtt, services).await?);
    Ok(running)
}
