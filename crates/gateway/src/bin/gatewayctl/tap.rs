//! `gatewayctl tap PATTERN`: follows every message on the topics a canonical pattern matches, through the admin
//! listener's `/api/tap` (no protocol client, nothing acknowledged, publishers never slowed), one line per message.

use clap::Args;
use serde_json::Value;

use crate::admin::Admin;
use crate::out;

#[derive(Args)]
pub struct TapArgs {
    /// Canonical pattern (`docs/topics.md`): `orders.#`, `sensors.*.temp`, `>`.
    pattern: String,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Print each message as the admin listener's JSON (one object per line) instead of a summary.
    #[arg(long)]
    json: bool,
}

pub async fn run(admin: &Admin, args: TapArgs) -> anyhow::Result<()> {
    let path = format!("/api/tap?pattern={}", percent_encode(&args.pattern));
    let mut seen = 0;
    admin
        .stream(&path, |data| {
            let message: Value = serde_json::from_str(data)?;
            if args.json {
                out::line(&message)?;
            } else {
                out::line(summary(&message))?;
            }
            seen += 1;
            Ok(args.count.is_none_or(|count| seen < count))
        })
        .await
}

/// `origin topic size [headers] payload` on one line.
fn summary(message: &Value) -> String {
    let text = |key: &str| message[key].as_str().unwrap_or_default().to_owned();
    let headers: Vec<String> = message["headers"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|pair| Some(format!("{}={}", pair[0].as_str()?, pair[1].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let payload = match message["payload"].as_str() {
        Some(payload) => format!("{payload:?}"),
        None => format!("base64:{}", text("payload_base64")),
    };
    let more = if message["truncated"] == Value::Bool(true) {
        "…"
    } else {
        ""
    };
    format!(
        "{} {} {}B [{}] {payload}{more}",
        text("origin"),
        text("topic"),
        message["size"].as_u64().unwrap_or_default(),
        headers.join(" ")
    )
}

/// The pattern as a query value: every byte but unreserved ones percent-encoded (`#` and `>` included).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
