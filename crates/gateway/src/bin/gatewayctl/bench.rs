//! `gatewayctl bench`: N publishers × M subscribers on one topic, fixed-rate (send times scheduled ahead, and
//! latency measured from the scheduled time so a stalled server cannot hide its stalls) or all-out, with
//! msg/s in and out, loss and latency percentiles (MessageLoop sides in protobuf, or JSON with `--ml-json`);
//! optionally the same shape against nats-server and against another MQTT broker (MQTT on both sides) in the
//! same run. `bench conns` measures gatewayd's memory per idle connection instead.

mod conns;
mod run;
mod side;
mod stats;

use std::io::IsTerminal as _;

use clap::{Args, Subcommand};
use clients::messageloop::Encoding;
use clients::{Credentials, Protocol};

use crate::admin::Admin;
use crate::credentials::CredentialArgs;
use side::{Endpoint, Gateway};
use stats::{Ratio, RunResult};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Mode {
    /// Opens idle connections and reports gatewayd's resident memory per connection.
    Conns(conns::ConnsArgs),
}

#[derive(Args)]
pub struct RunArgs {
    /// Protocol of both sides, unless `--pub-protocol`/`--sub-protocol` say otherwise.
    #[arg(long, default_value = "stomp")]
    protocol: Protocol,
    #[arg(long)]
    pub_protocol: Option<Protocol>,
    #[arg(long)]
    sub_protocol: Option<Protocol>,
    /// Publishers' listener (`host:port`); by default from the admin API.
    #[arg(long)]
    pub_address: Option<String>,
    /// Subscribers' listener (`host:port`); by default from the admin API.
    #[arg(long)]
    sub_address: Option<String>,
    /// Publisher connections.
    #[arg(long, short = 'n', default_value_t = 1)]
    publishers: usize,
    /// Subscriber connections (Loom subscribers share one room, so each message reaches one of them).
    #[arg(long, short = 'm', default_value_t = 1)]
    subscribers: usize,
    /// Payload bytes (at least 16: the send time and a tag travel in the payload).
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Total msg/s over all publishers; without it publishers send as fast as they can.
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds of sending.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Latency percentiles count only messages due at least this many seconds after sending starts (to
    /// measure the steady state after a start-up event, such as a stuck subscriber being cut).
    #[arg(long, default_value_t = 0.0)]
    latency_after: f64,
    /// Topic to use; by default one unique to this run.
    #[arg(long)]
    topic: Option<String>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// MQTT sides' QoS: 0, or 1 (QoS 1 publishes with a bounded window of PUBACKs awaited, QoS 1 subscriptions).
    /// NATS core stays at most once.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// MessageLoop sides speak JSON (subprotocol `messageloop+json`, text frames) instead of protobuf; their
    /// protocol is then named `messageloop-json` in the results.
    #[arg(long)]
    ml_json: bool,
    /// MessageLoop sides open G2 gRPC streams (listener `messageloop.grpc`) instead of WebSockets; their protocol
    /// is then named `messageloop-grpc` in the results.
    #[arg(long, conflicts_with = "ml_json")]
    ml_grpc: bool,
    /// Also run the same shape against this NATS server (`nats://127.0.0.1:4222`) and print the ratio.
    #[arg(long)]
    compare_nats: Option<String>,
    /// Also run the same shape against this MQTT broker (`127.0.0.1:1884`, e.g. mosquitto), with the MQTT client
    /// on both sides at `--qos`, and print the ratio. Without credentials.
    #[arg(long)]
    compare_mqtt: Option<String>,
    /// Presented by both sides' gatewayd connections (not to NATS).
    #[command(flatten)]
    credentials: CredentialArgs,
}

pub async fn run(admin: &Admin, args: BenchArgs) -> anyhow::Result<()> {
    match args.mode {
        Some(Mode::Conns(conns)) => conns::run(admin, conns).await,
        None => throughput(admin, args.run).await,
    }
}

async fn throughput(admin: &Admin, args: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.duration > 0.0 && args.duration.is_finite(),
        "--duration must be a positive number of seconds"
    );
    anyhow::ensure!(
        args.latency_after >= 0.0 && args.latency_after < args.duration,
        "--latency-after must be at least 0 and less than --duration"
    );
    anyhow::ensure!(args.publishers > 0, "--publishers must be at least 1");
    anyhow::ensure!(args.rate != Some(0), "--rate must be at least 1 msg/s");
    let pub_protocol = args.pub_protocol.unwrap_or(args.protocol);
    let sub_protocol = args.sub_protocol.unwrap_or(args.protocol);
    anyhow::ensure!(
        !args.ml_json || [pub_protocol, sub_protocol].contains(&Protocol::MessageLoop),
        "--ml-json needs a MessageLoop side"
    );
    anyhow::ensure!(
        !args.ml_grpc || [pub_protocol, sub_protocol].contains(&Protocol::MessageLoop),
        "--ml-grpc needs a MessageLoop side"
    );
    let encoding = if args.ml_json {
        Encoding::Json
    } else {
        Encoding::Protobuf
    };
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| format!("bench.{}", std::process::id()));
    let shape = run::Shape {
        publishers: args.publishers,
        subscribers: args.subscribers,
        size: args.size.max(stats::MIN_PAYLOAD),
        rate: args.rate,
        duration: std::time::Duration::from_secs_f64(args.duration),
        topic,
        progress: !args.json && std::io::stdout().is_terminal(),
        latency_after: std::time::Duration::from_secs_f64(args.latency_after),
    };
    let credentials = args.credentials.credentials();
    let at_least_once = args.qos == 1;
    let side = |protocol: Protocol, address: String, credentials: Credentials| {
        if args.ml_grpc && protocol == Protocol::MessageLoop {
            Endpoint::MessageLoopGrpc {
                address,
                credentials,
            }
        } else {
            Endpoint::Gateway(Gateway {
                protocol,
                address,
                credentials,
                at_least_once,
                encoding,
            })
        }
    };
    let publishers = side(
        pub_protocol,
        address(
            admin,
            pub_protocol,
            args.ml_grpc,
            args.pub_address.as_deref(),
        )
        .await,
        credentials.clone(),
    );
    let subscribers = side(
        sub_protocol,
        address(
            admin,
            sub_protocol,
            args.ml_grpc,
            args.sub_address.as_deref(),
        )
        .await,
        credentials,
    );
    let mut gateway = run::run("gatewayd", &publishers, &subscribers, &shape).await?;
    gateway.qos = args.qos;
    let nats = match &args.compare_nats {
        Some(url) => {
            let nats = Endpoint::Nats { url: url.clone() };
            Some(run::run("nats-server", &nats, &nats, &shape).await?)
        }
        None => None,
    };
    let mqtt_peer = match &args.compare_mqtt {
        Some(address) => {
            let peer = Endpoint::Gateway(Gateway {
                protocol: Protocol::Mqtt,
                address: address.clone(),
                credentials: Default::default(),
                at_least_once,
                encoding,
            });
            let mut result = run::run("mqtt-peer", &peer, &peer, &shape).await?;
            result.qos = args.qos;
            Some(result)
        }
        None => None,
    };
    report(gateway, nats, mqtt_peer, args.json)
}

/// Where a side of `protocol` connects: `explicit`, or its listener's address from the admin API (MessageLoop's gRPC
/// listener with `grpc`).
async fn address(admin: &Admin, protocol: Protocol, grpc: bool, explicit: Option<&str>) -> String {
    if grpc && protocol == Protocol::MessageLoop {
        return admin
            .listener_address("messageloop.grpc", explicit)
            .await
            .unwrap_or_else(|| "127.0.0.1:9090".to_owned());
    }
    admin.address(protocol, explicit).await
}

fn report(
    gateway: RunResult,
    nats: Option<RunResult>,
    mqtt_peer: Option<RunResult>,
    json: bool,
) -> anyhow::Result<()> {
    let ratio = nats.as_ref().map(|nats| Ratio::of(&gateway, nats));
    let mqtt_peer_ratio = mqtt_peer.as_ref().map(|peer| Ratio::of(&gateway, peer));
    if json {
        let value = serde_json::json!({
            "gatewayd": gateway,
            "nats": nats,
            "ratio": ratio,
            "mqtt_peer": mqtt_peer,
            "mqtt_peer_ratio": mqtt_peer_ratio,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let ratios: Vec<(&str, Ratio)> =
            [("nats-server", ratio), ("the MQTT peer", mqtt_peer_ratio)]
                .into_iter()
                .filter_map(|(name, ratio)| Some((name, ratio?)))
                .collect();
        let mut runs = vec![gateway];
        runs.extend(nats);
        runs.extend(mqtt_peer);
        stats::print_table(&runs, &ratios);
        for run in &runs {
            for error in &run.errors {
                eprintln!("{}: {error}", run.server);
            }
        }
    }
    Ok(())
}
