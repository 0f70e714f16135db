//! gRPC backends: `messageloop.proxy.v2.ProxyService` over HTTP/2, cleartext or TLS (`grpcs://`,
//! [`super::tls`]), one lazily connected channel per backend shared by all its calls.

use std::net::SocketAddr;

use tokio::sync::OnceCell;
use tonic::transport::{Channel, Endpoint};

use super::call::{ProxyReply, ProxyRequest};
use super::config::ProxyConfig;
use super::connector::Connector;
use super::hooks::Hook;
use super::tls::client_tls;
use crate::messageloop::pb::messageloop::proxy::v2::proxy_service_client::ProxyServiceClient;
use crate::messageloop::wire::proxy::{self as convert, HookRequest};

/// One `[[messageloop.proxy]]` entry of kind `grpc`.
pub struct GrpcBackend {
    name: String,
    endpoint: Endpoint,
    connector: Connector,
    /// Made on the first call, inside the runtime.
    channel: OnceCell<Channel>,
}

/// The URI tonic dials for an endpoint: `grpc://`, `grpcs://`, `https://` and a bare `host:port` become
/// `http://` (TLS is the [`Connector`]'s business, not tonic's).
pub fn dial_uri(endpoint: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest))
            if ["grpc", "grpcs", "https"]
                .iter()
                .any(|known| scheme.eq_ignore_ascii_case(known)) =>
        {
            format!("http://{rest}")
        }
        Some(_) => endpoint.to_owned(),
        None => format!("http://{endpoint}"),
    }
}

impl GrpcBackend {
    pub fn new(config: &ProxyConfig) -> Result<GrpcBackend, String> {
        let endpoint = Endpoint::from_shared(dial_uri(&config.endpoint))
            .map_err(|error| format!("endpoint: {error}"))?;
        let tls = match config.uses_tls() {
            true => Some(client_tls(config.tls.as_ref(), &[b"h2"])?),
            false => None,
        };
        Ok(GrpcBackend {
            name: config.name.clone(),
            endpoint,
            connector: Connector::new(tls),
            channel: OnceCell::new(),
        })
    }

    /// Makes one call; an error is the text a PROXY_ERROR or AUTH_ERROR carries.
    pub async fn call(
        &self,
        request: &ProxyRequest,
        remote_addr: Option<SocketAddr>,
    ) -> Result<ProxyReply, String> {
        let mut client = ProxyServiceClient::new(self.channel().await);
        let reply = match request {
            ProxyRequest::Rpc(call) => client
                .rpc(convert::rpc_request(call))
                .await
                .map(|response| convert::rpc_reply(response.into_inner())),
            ProxyRequest::Authenticate(call) => {
                let remote = remote_addr.map(|addr| addr.to_string()).unwrap_or_default();
                client
                    .authenticate(convert::authenticate_request(call, remote))
                    .await
                    .map(|response| convert::authenticate_reply(response.into_inner()))
            }
            ProxyRequest::SubscribeAcl(call) => client
                .subscribe_acl(convert::subscribe_acl_request(call))
                .await
                .map(|response| convert::acl_reply(response.into_inner().error)),
            ProxyRequest::PublishAcl(call) => client
                .publish_acl(convert::publish_acl_request(call))
                .await
                .map(|response| convert::acl_reply(response.into_inner().error)),
        };
        reply.map_err(|status| self.failure(&status))
    }

    /// Sends one hook; its (empty) answer is not looked at.
    pub async fn hook(&self, hook: &Hook) -> Result<(), String> {
        let mut client = ProxyServiceClient::new(self.channel().await);
        let sent = match convert::hook_request(hook) {
            HookRequest::Connected(request) => client.on_connected(request).await.map(drop),
            HookRequest::Subscribed(request) => client.on_subscribed(request).await.map(drop),
            HookRequest::Unsubscribed(request) => client.on_unsubscribed(request).await.map(drop),
            HookRequest::Disconnected(request) => client.on_disconnected(request).await.map(drop),
        };
        sent.map_err(|status| self.failure(&status))
    }

    async fn channel(&self) -> Channel {
        self.channel
            .get_or_init(|| async {
                self.endpoint
                    .connect_with_connector_lazy(self.connector.clone())
            })
            .await
            .clone()
    }

    fn failure(&self, status: &tonic::Status) -> String {
        format!(
            "proxy {}: {:?}: {}",
            self.name,
            status.code(),
            status.message()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::dial_uri;

    #[test]
    fn endpoints_become_http_uris() {
        assert_eq!(dial_uri("app:50051"), "http://app:50051");
        assert_eq!(dial_uri("grpc://app:50051"), "http://app:50051");
        assert_eq!(dial_uri("http://app:50051"), "http://app:50051");
        assert_eq!(dial_uri("GRPCS://app:443"), "http://app:443");
    }
}
