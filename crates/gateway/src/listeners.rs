//! Starts every configured protocol listener with the shared services.

use protocols::{RunningListener, Services};

use crate::config::Config;

/// Starts the listeners `config` enables, in a fixed order.
pub async fn start_all(
    config: &Config,
    services: &Services,
) -> anyhow::Result<Vec<RunningListener>> {
    let mut listeners = Vec::new();
    listeners.extend(protocols::stomp::start(&config.stomp, services).await?);
    Ok(listeners)
}
