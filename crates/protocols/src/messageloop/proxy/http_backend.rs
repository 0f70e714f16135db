//! HTTP backends: every call is `POST <endpoint>` with a protojson body (`Content-Type: application/json`;
//! RPC bodies with lowerCamelCase names, the others snake_case), the configured headers, a 200 status
//! expected and the response body capped at [`MAX_BODY`].

use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

use super::call::{ProxyReply, ProxyRequest};
use super::config::ProxyConfig;
use super::hooks::Hook;
use crate::messageloop::json;
use crate::messageloop::pb::messageloop::proxy::v2 as pb;
use crate::messageloop::wire::proxy::{self as convert, HookRequest};

/// Largest response body read from a backend.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// One `[[messageloop.proxy]]` entry of kind `http`.
pub struct HttpBackend {
    name: String,
    endpoint: String,
    headers: HeaderMap,
    client: reqwest::Client,
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
        // Backends are reached directly: HTTP_PROXY and the like are not read.
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|error| format!("http client: {error}"))?;
        Ok(HttpBackend {
            name: config.name.clone(),
            endpoint: config.endpoint.clone(),
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
        let mut response = self
            .client
            .post(&self.endpoint)
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|error| fail(&error))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(fail(&format_args!("status {}", response.status())));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_BODY as u64)
        {
            return Err(fail(&format_args!("response body over {MAX_BODY} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| fail(&error))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(fail(&format_args!("response body over {MAX_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
