//! `pub`, `sub`, `req` and `reply`: one connection over the chosen protocol (with `--token`/`--login` where it
//! carries credentials), messages as text or JSON lines.

use std::io::Read as _;
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use bytes::Bytes;
use clap::Args;
use clients::{Client, ClientError, Message, Outgoing, Protocol};
use futures::StreamExt as _;

use crate::admin::Admin;
use crate::credentials::CredentialArgs;
use crate::out;

#[derive(Args)]
pub struct Target {
    /// Protocol to speak: stomp, messageloop, goomerang, loom, chanserv or mqtt.
    #[arg(long, short)]
    pub protocol: Protocol,
    /// `host:port` of the listener; by default looked up in the admin API, else the protocol's default port.
    #[arg(long)]
    pub address: Option<String>,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

#[derive(Args)]
pub struct PubArgs {
    #[command(flatten)]
    target: Target,
    /// Topic (`orders.eu`); with STOMP also a destination (`/queue/orders`).
    topic: String,
    /// Payload; `-` or none reads standard input.
    payload: Option<String>,
    /// How many times to publish it.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Affinity key (STOMP `JMSXGroupID`, Loom key).
    #[arg(long)]
    key: Option<String>,
    /// User header `name=value` (repeatable; STOMP, MessageLoop, Goomerang).
    #[arg(long = "header", short = 'H', value_parser = parse_header)]
    headers: Vec<(String, String)>,
}

#[derive(Args)]
pub struct SubArgs {
    #[command(flatten)]
    target: Target,
    /// Topic or pattern in the protocol's syntax (Loom: a room).
    topic: String,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Print one JSON object per message, with its metadata.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ReqArgs {
    #[command(flatten)]
    target: Target,
    /// STOMP: destination or topic; MessageLoop: `<channel>.<method>`; Goomerang: the message kind.
    target_name: String,
    /// Payload; `-` or none reads standard input.
    payload: Option<String>,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Print the reply as JSON with its metadata.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ReplyArgs {
    #[command(flatten)]
    target: Target,
    /// Topic the requests arrive on (for MessageLoop requests `$rpc.messageloop.<channel>.<method>`,
    /// for Goomerang `$rpc.goomerang.<kind with . as %2E>`).
    topic: String,
    /// Reply payload; without it each request's payload is echoed.
    #[arg(long)]
    payload: Option<String>,
    /// Exit after answering this many requests.
    #[arg(long)]
    count: Option<u64>,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not name=value"))
}

fn payload(given: Option<String>) -> anyhow::Result<Bytes> {
    match given.as_deref() {
        Some("-") | None => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            Ok(Bytes::from(buf))
        }
        Some(text) => Ok(Bytes::from(text.to_owned())),
    }
}

async fn connect(admin: &Admin, target: &Target) -> anyhow::Result<Client> {
    let address = admin
        .address(target.protocol, target.address.as_deref())
        .await;
    let credentials = target.credentials.credentials();
    Client::connect(target.protocol, &address, &credentials)
        .await
        .with_context(|| format!("{} at {address}", target.protocol))
}

pub async fn publish(admin: &Admin, args: PubArgs) -> anyhow::Result<()> {
    let message = Outgoing {
        topic: args.topic,
        payload: payload(args.payload)?,
        key: args.key.map(Bytes::from),
        headers: args.headers,
        ..Outgoing::default()
    };
    let mut client = connect(admin, &args.target).await?;
    for _ in 0..args.count {
        client.publish(&message).await?;
    }
    client.flush().await?;
    client.close().await?;
    Ok(())
}

pub async fn subscribe(admin: &Admin, args: SubArgs) -> anyhow::Result<()> {
    let mut client = connect(admin, &args.target).await?;
    client.subscribe(&args.topic).await?;
    let messages = client.into_messages();
    let mut messages = std::pin::pin!(messages);
    let mut seen = 0;
    while args.count.is_none_or(|count| seen < count) {
        let message = messages.next().await.ok_or(ClientError::Closed)??;
        print_message(&message, args.json)?;
        seen += 1;
    }
    Ok(())
}

pub async fn request(admin: &Admin, args: ReqArgs) -> anyhow::Result<()> {
    if !args.target.protocol.can_request() {
        bail!(
            "{} clients cannot receive replies; use stomp, messageloop, goomerang or mqtt",
            args.target.protocol
        );
    }
    let body = payload(args.payload)?;
    let mut client = connect(admin, &args.target).await?;
    let reply = client
        .request(&args.target_name, body, Duration::from_secs(args.timeout))
        .await?;
    print_message(&reply, args.json)
}

pub async fn reply(admin: &Admin, args: ReplyArgs) -> anyhow::Result<()> {
    let mut client = connect(admin, &args.target).await?;
    client.subscribe(&args.topic).await?;
    let mut answered = 0;
    while args.count.is_none_or(|count| answered < count) {
        let request = client.next_message().await?;
        if request.reply_to.is_none() {
            continue;
        }
        let body = match &args.payload {
            Some(text) => Bytes::from(text.clone()),
            None => request.payload.clone(),
        };
        client.reply(&request, body).await?;
        answered += 1;
    }
    client.close().await?;
    Ok(())
}

fn print_message(message: &Message, json: bool) -> anyhow::Result<()> {
    if !json {
        return out::line(String::from_utf8_lossy(&message.payload));
    }
    let text = std::str::from_utf8(&message.payload).ok();
    let value = serde_json::json!({
        "topic": message.topic,
        "payload": text,
        "payload_base64": text.is_none().then(|| base64::engine::general_purpose::STANDARD.encode(&message.payload)),
        "key": message.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
        "content_type": message.content_type,
        "headers": message.headers,
        "reply_to": message.reply_to,
        "correlation_id": message.correlation_id,
    });
    out::line(value)
}
