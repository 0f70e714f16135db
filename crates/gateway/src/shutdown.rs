//! Process signals (SIGINT/SIGTERM stop, SIGHUP reloads) and draining listeners within the configured timeout.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a signal asks for.
pub enum Signal {
    Reload,
    Stop(&'static str),
}

/// The signals gatewayd handles.
pub struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.terminate.recv() => Signal::Stop("SIGTERM"),
            _ = self.interrupt.recv() => Signal::Stop("SIGINT"),
            _ = self.hangup.recv() => Signal::Reload,
        }
    }
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
