//! The MessageLoop backend proxy (docs/protocols/messageloop.md, "Backend proxy"): client RPCs, Connect tokens,
//! subscribe and publish ACL checks handed to application backends (HTTP JSON or gRPC
//! `messageloop.proxy.v2.ProxyService`) chosen by route globs, and the lifecycle [`hooks`]. The session decides
//! ([`Router`]) and queues transport-free [`call::ProxyCall`]s; the driver runs them with [`Proxies::spawn`] and
//! feeds the answers back. Hooks are fired by the session through [`Hooks`] and never answered.

pub mod call;
pub mod config;
mod connector;
mod glob;
mod grpc_backend;
pub mod hooks;
mod http_backend;
pub mod responder;
pub mod route;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

pub use call::{ProxyAnswer, ProxyCall, ProxyFailure};
pub use config::{ProxyConfig, RpcFallback};
pub use hooks::{HookCall, Hooks};
pub use http_backend::MAX_BODY;
pub use route::Router;

use self::config::ProxyKind;
use self::grpc_backend::GrpcBackend;
use self::http_backend::HttpBackend;

/// The configured backends and their routes.
pub struct Proxies {
    router: Arc<Router>,
    backends: Vec<Arc<Backend>>,
    hooks: Arc<Hooks>,
}

/// One backend, by kind (both hold large client settings, so boxed).
enum Backend {
    Http(Box<HttpBackend>),
    Grpc(Box<GrpcBackend>),
}

impl Backend {
    fn new(config: &ProxyConfig) -> Result<Backend, String> {
        match config.kind() {
            ProxyKind::Http => HttpBackend::new(config).map(|http| Backend::Http(Box::new(http))),
            ProxyKind::Grpc => GrpcBackend::new(config).map(|grpc| Backend::Grpc(Box::new(grpc))),
        }
    }

    async fn call(
        &self,
        request: &call::ProxyRequest,
        remote_addr: Option<SocketAddr>,
    ) -> Result<call::ProxyReply, String> {
        match self {
            Backend::Http(backend) => backend.call(request, remote_addr).await,
            Backend::Grpc(backend) => backend.call(request, remote_addr).await,
        }
    }

    async fn hook(&self, hook: &hooks::Hook) -> Result<(), String> {
        match self {
            Backend::Http(backend) => backend.hook(hook).await,
            Backend::Grpc(backend) => backend.hook(hook).await,
        }
    }
}

impl Proxies {
    /// Builds the backends of checked entries ([`config::validate`]).
    pub fn new(configs: &[ProxyConfig]) -> Result<Proxies, String> {
        let backends: Vec<Arc<Backend>> = configs
            .iter()
            .enumerate()
            .map(|(index, config)| {
                Backend::new(config)
                    .map(Arc::new)
                    .map_err(|error| format!("messageloop.proxy[{index}].{error}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Proxies {
            router: Arc::new(Router::new(configs)),
            hooks: Arc::new(Hooks::new(backends.clone())),
            backends,
        })
    }

    /// The routes, for sessions.
    pub fn router(&self) -> Arc<Router> {
        self.router.clone()
    }

    /// Where sessions fire their hooks.
    pub fn hooks(&self) -> Arc<Hooks> {
        self.hooks.clone()
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
                Ok(Err(error)) => {
                    tracing::debug!(%error, "messageloop: proxy call failed");
                    Err(ProxyFailure::Failed(error))
                }
                Err(_) => {
                    tracing::debug!(proxy = call.proxy, "messageloop: proxy call timed out");
                    Err(ProxyFailure::Timeout)
                }
            };
            let _ = answers.send(ProxyAnswer {
                id: call.id,
                outcome,
            });
        });
    }
}
