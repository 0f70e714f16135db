//! `[[messageloop.proxy]]`: application backends that answer client RPCs, check Connect tokens and ACLs and
//! hear the lifecycle hooks, each with its endpoint (TLS for `https://` and `grpcs://`) and the routes
//! (channel and method globs) it serves; and `messageloop.rpc_fallback`, what an RPC no route matches does.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::tls::BackendTls;
use crate::config::ConfigError;

/// One `[[messageloop.proxy]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Names the backend in logs and errors.
    pub name: String,
    /// `http://…` or `https://…` for HTTP; `host:port` or `grpc://host:port` for gRPC over cleartext HTTP/2,
    /// `grpcs://host:port` for gRPC over TLS.
    pub endpoint: String,
    /// How long one call may take; the client then gets RPC_TIMEOUT (RPC) or AUTH_ERROR (Connect).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `http` or `grpc`; by default from the endpoint (`http(s)://` is HTTP, anything else gRPC).
    #[serde(default)]
    pub kind: Option<ProxyKind>,
    /// Extra HTTP request headers (HTTP only).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TLS settings of an `https://` or `grpcs://` endpoint (without: the system's roots, the endpoint's host).
    #[serde(default)]
    pub tls: Option<BackendTls>,
    /// What this backend serves, checked in config order across all proxies.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

fn default_timeout_ms() -> u64 {
    30_000
}

/// `{ channel = "glob", method = "glob" }`; `*` spans any characters, dots included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub channel: String,
    pub method: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyKind {
    Http,
    Grpc,
}

/// `messageloop.rpc_fallback`: what an RPC that no proxy route matches does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RpcFallback {
    /// A request on the bus, answered by a responder on any protocol (NO_PROXY when nobody listens).
    #[default]
    Bus,
    /// NO_PROXY, as upstream answers.
    None,
}

impl ProxyConfig {
    /// The configured kind, or the one the endpoint's scheme implies.
    pub fn kind(&self) -> ProxyKind {
        self.kind.unwrap_or_else(|| {
            let endpoint = self.endpoint.to_ascii_lowercase();
            if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
                ProxyKind::Http
            } else {
                ProxyKind::Grpc
            }
        })
    }

    /// Whether calls go over TLS: an `https://` or `grpcs://` endpoint.
    pub fn uses_tls(&self) -> bool {
        self.endpoint.split_once("://").is_some_and(|(scheme, _)| {
            scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("grpcs")
        })
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Checks one entry; `key` is its place (`messageloop.proxy[0]`), which errors start with.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new(format!("{key}.name"), "must not be empty"));
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::new(
                format!("{key}.timeout_ms"),
                "must be at least 1",
            ));
        }
        let endpoint = self.endpoint.to_ascii_lowercase();
        let http_scheme = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        match self.kind() {
            ProxyKind::Http if !http_scheme => {
                return Err(ConfigError::new(
                    format!("{key}.endpoint"),
                    format!(
                        "an http proxy needs an http:// or https:// URL, not {:?}",
                        self.endpoint
                    ),
                ));
            }
            ProxyKind::Http => {
                if let Err(error) = http::Uri::try_from(self.endpoint.as_str()) {
                    return Err(ConfigError::new(format!("{key}.endpoint"), error));
                }
            }
            ProxyKind::Grpc => {
                let uri = super::grpc_backend::dial_uri(&self.endpoint);
                if let Err(error) = http::Uri::try_from(uri.as_str()) {
                    return Err(ConfigError::new(format!("{key}.endpoint"), error));
                }
                if !self.headers.is_empty() {
                    return Err(ConfigError::new(
                        format!("{key}.headers"),
                        "only an http proxy sends headers",
                    ));
                }
            }
        }
        if let Some(tls) = &self.tls {
            if !self.uses_tls() {
                return Err(ConfigError::new(
                    format!("{key}.tls"),
                    format!(
                        "only an https:// or grpcs:// endpoint uses TLS, not {:?}",
                        self.endpoint
                    ),
                ));
            }
            tls.validate(key)?;
        }
        for (name, value) in &self.headers {
            if http::HeaderName::try_from(name.as_str()).is_err() {
                return Err(ConfigError::new(
                    format!("{key}.headers"),
                    format!("{name:?} is not a header name"),
                ));
            }
            if http::HeaderValue::try_from(value.as_str()).is_err() {
                return Err(ConfigError::new(
                    format!("{key}.headers.{name}"),
                    "not a valid header value",
                ));
            }
        }
        if self.routes.is_empty() {
            return Err(ConfigError::new(
                format!("{key}.routes"),
                "at least one route is needed",
            ));
        }
        Ok(())
    }
}

/// Checks every entry and that names are unique.
pub fn validate(proxies: &[ProxyConfig]) -> Result<(), ConfigError> {
    for (index, proxy) in proxies.iter().enumerate() {
        let key = format!("messageloop.proxy[{index}]");
        proxy.validate(&key)?;
        if proxies[..index].iter().any(|p| p.name == proxy.name) {
            return Err(ConfigError::new(
                format!("{key}.name"),
                format!("{:?} is used twice", proxy.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ProxyConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn kind_follows_the_endpoint_scheme() {
        let http = parse("name = \"a\"\nendpoint = \"HTTPS://b/rpc\"\nroutes = [{ channel = \"*\", method = \"*\" }]\n");
        assert_eq!(http.kind(), ProxyKind::Http);
        assert_eq!(http.timeout(), Duration::from_secs(30));
        let grpc = parse("name = \"a\"\nendpoint = \"b:50051\"\nroutes = [{ channel = \"*\", method = \"*\" }]\n");
        assert_eq!(grpc.kind(), ProxyKind::Grpc);
        assert!(
            toml::from_str::<ProxyConfig>("name = \"a\"\nendpoint = \"b\"\nkind = \"soap\"\n")
                .is_err()
        );
        assert!(toml::from_str::<ProxyConfig>(
            "name = \"a\"\nendpoint = \"b\"\nroutes = [{ channel = \"*\" }]\n"
        )
        .is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let ok = parse("name = \"a\"\nendpoint = \"http://b/rpc\"\nheaders = { authorization = \"Bearer x\" }\nroutes = [{ channel = \"*\", method = \"*\" }]\n");
        assert_eq!(validate(std::slice::from_ref(&ok)), Ok(()));
        let twice = validate(&[ok.clone(), ok.clone()]).unwrap_err();
        assert!(
            twice.key.starts_with("messageloop.proxy[1].name"),
            "{twice}"
        );
        let mut no_routes = ok.clone();
        no_routes.routes.clear();
        let error = validate(&[no_routes]).unwrap_err();
        assert!(
            error.key.starts_with("messageloop.proxy[0].routes"),
            "{error}"
        );
        let mut bad_header = ok.clone();
        bad_header.headers.insert("bad header".into(), "x".into());
        assert!(validate(&[bad_header])
            .unwrap_err()
            .key
            .starts_with("messageloop.proxy[0].headers"));
        let mut http_without_url = ok.clone();
        http_without_url.endpoint = "b:80".into();
        http_without_url.kind = Some(ProxyKind::Http);
        assert!(validate(&[http_without_url])
            .unwrap_err()
            .key
            .starts_with("messageloop.proxy[0].endpoint"));
        let mut grpc_headers = ok.clone();
        grpc_headers.endpoint = "app:50051".into();
        assert!(validate(&[grpc_headers.clone()])
            .unwrap_err()
            .key
            .starts_with("messageloop.proxy[0].headers"));
        grpc_headers.headers.clear();
        assert_eq!(validate(&[grpc_headers]), Ok(()));
        let mut cleartext_tls = ok.clone();
        cleartext_tls.tls = Some(BackendTls::default());
        assert!(validate(&[cleartext_tls.clone()])
            .unwrap_err()
            .key
            .starts_with("messageloop.proxy[0].tls"));
        cleartext_tls.endpoint = "grpcs://app:443".into();
        cleartext_tls.headers.clear();
        assert_eq!(cleartext_tls.kind(), ProxyKind::Grpc);
        assert_eq!(validate(&[cleartext_tls]), Ok(()));
        let mut zero = ok;
        zero.timeout_ms = 0;
        assert!(validate(&[zero])
            .unwrap_err()
            .key
            .starts_with("messageloop.proxy[0].timeout_ms"));
    }
}
