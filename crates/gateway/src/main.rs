//! `gatewayd`: loads the configuration, starts the bus, the protocol listeners and the admin API, and shuts down
//! gracefully on SIGINT/SIGTERM.

mod admin;
mod config;
mod listeners;
mod shutdown;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use core_bus::Bus;
use protocols::{ConnectionRegistry, Services};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LogFormat};

#[derive(Parser)]
#[command(name = "gatewayd", version, about = "Multi-protocol messaging gateway")]
struct Cli {
    /// Configuration file (TOML). Without it, defaults and GATEWAYD_* variables apply.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Log format; overrides `log.format`.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Checks a configuration file and exits non-zero naming the bad key.
    CheckConfig { file: PathBuf },
}

fn init_tracing(config: &Config, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match Config::load(Some(file)) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{}: {error}", file.display());
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(&config, cli.log_format.unwrap_or(config.log.format));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let bus = Bus::new(config.bus.clone());
    let shutdown = CancellationToken::new();
    let connections = ConnectionRegistry::default();
    let services = Services {
        bus: bus.clone(),
        connections: connections.clone(),
        shutdown: shutdown.clone(),
    };
    let ready = Arc::new(AtomicBool::new(false));
    let state = admin::AdminState {
        bus,
        connections,
        listeners: Default::default(),
        ready: ready.clone(),
        prometheus,
    };
    let admin_token = CancellationToken::new();
    let (admin_address, admin_task) =
        admin::serve(config.admin.address, state.clone(), admin_token.clone()).await?;
    tracing::info!(address = %admin_address, "admin listener bound");

    let running = listeners::start_all(&config, &services).await?;
    let mut tasks = Vec::with_capacity(running.len());
    {
        let mut infos = state.listeners.write();
        for listener in running {
            tracing::info!(name = %listener.name, address = %listener.local_addr, "listener bound");
            infos.push(admin::ListenerInfo {
                name: listener.name,
                protocol: listener.protocol,
                transport: listener.transport,
                address: listener.local_addr,
            });
            tasks.push(listener.task);
        }
    }
    ready.store(true, Ordering::Release);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "gatewayd ready");

    let signal = shutdown::signal().await?;
    tracing::info!(signal, "shutting down");
    ready.store(false, Ordering::Release);
    let timeout = Duration::from_secs(config.shutdown.drain_timeout_secs);
    if !shutdown::drain(&shutdown, tasks, timeout).await {
        tracing::warn!(
            ?timeout,
            "drain timeout reached; closing remaining connections"
        );
    }
    admin_token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), admin_task).await;
    Ok(())
}
