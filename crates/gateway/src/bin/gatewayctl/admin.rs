//! The admin API as gatewayctl uses it: the JSON listings, and where a protocol's listener is bound.

use anyhow::Context as _;
use clients::Protocol;

pub struct Admin {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Admin {
    /// The admin API at `base`, presenting `token` as a bearer token when given.
    pub fn new(base: &str, token: Option<&str>) -> Admin {
        Admin {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            token: token.map(str::to_owned),
        }
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .request(reqwest::Method::GET, &url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        Ok(checked(response).await?.json().await?)
    }

    /// Sends `method path` and prints the JSON answer.
    pub async fn show(&self, method: &str, path: &str) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "POST" => self.request(reqwest::Method::POST, &url),
            _ => self.request(reqwest::Method::GET, &url),
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let body: serde_json::Value = checked(response).await?.json().await?;
        println!("{}", serde_json::to_string_pretty(&body)?);
        Ok(())
    }

    /// Opens the stream of `GET path` (server-sent events) and hands each event's data to `on_data` until it
    /// returns false or the stream ends.
    pub async fn stream(
        &self,
        path: &str,
        mut on_data: impl FnMut(&str) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let mut response = checked(
            self.request(reqwest::Method::GET, &url)
                .send()
                .await
                .with_context(|| format!("GET {url}"))?,
        )
        .await?;
        let mut events = SseReader::default();
        while let Some(chunk) = response.chunk().await? {
            for data in events.push(&chunk) {
                if !on_data(&data)? {
                    return Ok(());
                }
            }
        }
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

/// The response when it succeeded; else an error with the status and the admin listener's reason.
async fn checked(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let reason = response.text().await.unwrap_or_default();
    let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
        " (give the admin token with --admin-token or GATEWAYCTL_ADMIN_TOKEN)"
    } else {
        ""
    };
    anyhow::bail!("admin API answered {status}: {}{hint}", reason.trim())
}

/// Splits a server-sent event stream into the data of its events (the `data:` lines of each, joined by newlines;
/// comments such as keep-alives are skipped).
#[derive(Default)]
struct SseReader {
    pending: Vec<u8>,
}

impl SseReader {
    fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|value| value.strip_prefix(' ').unwrap_or(value))
                .collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::SseReader;

    #[test]
    fn events_are_split_across_chunks_and_keep_alives_skipped() {
        let mut reader = SseReader::default();
        assert!(reader.push(b"event: message\ndata: {\"a\"").is_empty());
        assert_eq!(reader.push(b":1}\n\n:\n\ndata: x\n\n"), ["{\"a\":1}", "x"]);
    }
}
