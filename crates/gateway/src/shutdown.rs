//! Waits for SIGINT/SIGTERM and drains listeners within the configured timeout.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Resolves on the first SIGINT or SIGTERM.
pub async fn signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

/// Cancels `token` and waits for `tasks` to finish, at most `timeout`. Returns whether all of them finished.
pub async fn drain(
    token: &CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    timeout: Duration,
) -> bool {
    token.cancel();
    let all = futures::future::join_all(tasks);
    tokio::time::timeout(timeout, all).await.is_ok()
}
