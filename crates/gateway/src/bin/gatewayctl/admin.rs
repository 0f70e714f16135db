//! The admin API as gatewayctl uses it: the JSON listings, and where a protocol's listener is bound.

use anyhow::Context as _;
use gateway::clients::Protocol;

pub struct Admin {
    base: String,
    http: reqwest::Client,
}

impl Admin {
    pub fn new(base: &str) -> Admin {
        Admin {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        Ok(response.error_for_status()?.json().await?)
    }

    /// Sends `method path` and prints the JSON answer.
    pub async fn show(&self, method: &str, path: &str) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "POST" => self.http.post(&url),
            _ => self.http.get(&url),
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let body: serde_json::Value = response.error_for_status()?.json().await?;
        println!("{}", serde_json::to_string_pretty(&body)?);
        Ok(())
    }

    /// `address` if given; else the bound address of the protocol's listener from `/api/listeners`
    /// (a wildcard IP becomes loopback); else the protocol's default port on loopback.
    pub async fn address(&self, protocol: Protocol, address: Option<&str>) -> String {
        self.listener_address(protocol.listener(), address)
            .await
            .unwrap_or_else(|| protocol.default_address().to_owned())
    }

    /// Like [`Admin::address`] for a listener named `listener`; `None` when it is not found.
    pub async fn listener_address(&self, listener: &str, address: Option<&str>) -> Option<String> {
        if let Some(address) = address {
            return Some(address.to_owned());
        }
        let listeners = self.get("/api/listeners").await.ok()?;
        let bound: std::net::SocketAddr = listeners
            .as_array()?
            .iter()
            .find(|l| l["name"] == listener)?["address"]
            .as_str()?
            .parse()
            .ok()?;
        let ip = if bound.ip().is_unspecified() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            bound.ip()
        };
        Some(std::net::SocketAddr::new(ip, bound.port()).to_string())
    }

    /// gatewayd's pid and resident set size in bytes, from `/api/process`.
    pub async fn process(&self) -> anyhow::Result<(u32, u64)> {
        let process = self.get("/api/process").await?;
        let pid = process["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .context("/api/process has no pid")?;
        let rss = process["rss_bytes"]
            .as_u64()
            .context("/api/process has no rss_bytes")?;
        Ok((pid, rss))
    }
}
