//! HTTP backends: every call is `POST <endpoint>` with a protojson body (`Content-Type: application/json`;
//! RPC bodies with lowerCamelCase names, the others snake_case), the configured headers, a 200 status
//! expected and the response body capped at [`MAX_BODY`]. HTTP/1.1 with pooled connections, TLS for
//! `https://` endpoints ([`super::tls`]).

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::connector::Connector;

use super::call::{ProxyReply, ProxyRequest};
use super::config::ProxyConfig;
use super::hooks::Hook;
use super::tls::client_tls;
use crate::messageloop::json;
use crate::messageloop::pb::messageloop::proxy::v2 as pb;
use crate::messageloop::wire::proxy::{self as convert, HookRequest};

/// Largest response body read from a backend.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// One `[[messageloop.proxy]]` entry of kind `http`.
pub struct HttpBackend {
    name: String,
    endpoint: Uri,
    headers: HeaderMap,
    client: Client<Connector, Full<Bytes>>,
}

impl HttpBackend {
    pub fn new(config: &ProxyConfig) -> Result<HttpBackend, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|error| format!("headers: {name:?}: {error}"))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|error| format!("headers.{name}: {error}"))?;
            headers.insert(name, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let endpoint = Uri::try_from(config.endpoint.as_str())
            .map_err(|error| format!("endpoint: {error}"))?;
        let tls = match endpoint.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => {
                Some(client_tls(config.tls.as_ref(), &[b"http/1.1"])?)
            }
            _ => None,
        };
        // Backends are reached directly: HTTP_PROXY and the like are not read.
        let client = Client::builder(TokioExecutor::new()).build(Connector::new(tls));
        Ok(HttpBackend {
            name: config.name.clone(),
            endpoint,
            headers,
            client,
        })
    }

    /// Makes one call; an error is the text a PROXY_ERROR or AUTH_ERROR carries.
    pub async fn call(
        &self,
        request: &ProxyRequest,
        remote_addr: Option<SocketAddr>,
    ) -> Result<ProxyReply, String> {
        let fail = |error: json::JsonError| format!("proxy {}: {error}", self.name);
        let reply = match request {
            ProxyRequest::Rpc(call) => {
                let body = json::to_camel_value(&convert::rpc_request(call)).map_err(fail)?;
                let body = self.post(body.to_string()).await?;
                json::from_slice::<pb::RpcResponse>(&body).map(convert::rpc_reply)
            }
            ProxyRequest::Authenticate(call) => {
                let remote = remote_addr.map(|addr| addr.to_string()).unwrap_or_default();
                let body =
                    json::to_value(&convert::authenticate_request(call, remote)).map_err(fail)?;
                let body = self.post(body.to_string()).await?;
                json::from_slice::<pb::AuthenticateResponse>(&body).map(convert::authenticate_reply)
            }
            ProxyRequest::SubscribeAcl(call) => {
                let body = json::to_value(&convert::subscribe_acl_request(call)).map_err(fail)?;
                let body = self.post(body.to_string()).await?;
                json::from_slice::<pb::SubscribeAclResponse>(&body)
                    .map(|response| convert::acl_reply(response.error))
            }
            ProxyRequest::PublishAcl(call) => {
                let body = json::to_value(&convert::publish_acl_request(call)).map_err(fail)?;
                let body = self.post(body.to_string()).await?;
                json::from_slice::<pb::PublishAclResponse>(&body)
                    .map(|response| convert::acl_reply(response.error))
            }
        };
        reply.map_err(fail)
    }

    /// Sends one hook; only the status counts, the body is not read.
    pub async fn hook(&self, hook: &Hook) -> Result<(), String> {
        let body = match convert::hook_request(hook) {
            HookRequest::Connected(request) => json::to_value(&request),
            HookRequest::Subscribed(request) => json::to_value(&request),
            HookRequest::Unsubscribed(request) => json::to_value(&request),
            HookRequest::Disconnected(request) => json::to_value(&request),
        }
        .map_err(|error| format!("proxy {}: {error}", self.name))?;
        self.post(body.to_string()).await.map(drop)
    }

    async fn post(&self, body: String) -> Result<Vec<u8>, String> {
        let fail = |error: &dyn std::fmt::Display| format!("proxy {}: {error}", self.name);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| fail(&error))?;
        request.headers_mut().extend(self.headers.clone());
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| fail(&ErrorChain(&error)))?;
        if response.status() != StatusCode::OK {
            return Err(fail(&format_args!("status {}", response.status())));
        }
        let mut incoming = response.into_body();
        let mut body = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|error| fail(&error))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            if body.len() + chunk.len() > MAX_BODY {
                return Err(fail(&format_args!("response body over {MAX_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// An error with its sources, `: `-separated (hyper's own text hides the cause, a refused connection or a
/// failed certificate check).
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}
