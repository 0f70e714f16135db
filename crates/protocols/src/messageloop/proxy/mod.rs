//! The MessageLoop backend proxy (reference §3.6, §4): client RPCs and Connect tokens handed to
//! application backends chosen by route globs. The session decides ([`Router`]) and queues transport-free
//! [`call::ProxyCall`]s; the listener runs them with [`Proxies::spawn`] and feeds the answers back.

pub mod call;
pub mod config;
mod glob;
mod http_backend;
pub mod route;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

pub use call::{ProxyAnswer, ProxyCall, ProxyFailure};
pub use config::{ProxyConfig, RpcFallback};
pub use http_backend::MAX_BODY;
pub use route::Router;

use self::http_backend::HttpBackend;

/// The configured backends and their routes.
pub struct Proxies {
    router: Arc<Router>,
    backends: Vec<Arc<HttpBackend>>,
}

impl Proxies {
    /// Builds the backends of checked entries ([`config::validate`]).
    pub fn new(configs: &[ProxyConfig]) -> Result<Proxies, String> {
        let backends = configs
            .iter()
            .enumerate()
            .map(|(index, config)| {
                HttpBackend::new(config)
                    .map(Arc::new)
                    .map_err(|error| format!("messageloop.proxy[{index}].{error}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Proxies {
            router: Arc::new(Router::new(configs)),
            backends,
        })
    }

    /// The routes, for sessions.
    pub fn router(&self) -> Arc<Router> {
        self.router.clone()
    }

    /// Runs `call` in its own task and sends its answer to `answers`; a call that takes longer than its
    /// timeout is answered with [`ProxyFailure::Timeout`].
    pub fn spawn(
        &self,
        call: ProxyCall,
        remote_addr: Option<SocketAddr>,
        answers: UnboundedSender<ProxyAnswer>,
    ) {
        let Some(backend) = self.backends.get(call.proxy).cloned() else {
            let outcome = Err(ProxyFailure::Failed(format!("no proxy {}", call.proxy)));
            let _ = answers.send(ProxyAnswer {
                id: call.id,
                outcome,
            });
            return;
        };
        tokio::spawn(async move {
            let made = tokio::time::timeout(call.timeout, backend.call(&call.request, remote_addr));
            let outcome = match made.await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(error)) => Err(ProxyFailure::Failed(error)),
                Err(_) => Err(ProxyFailure::Timeout),
            };
            let _ = answers.send(ProxyAnswer {
                id: call.id,
                outcome,
            });
        });
    }
}
