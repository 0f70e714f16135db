//! `gatewayd`: loads the configuration, starts the bus, the protocol listeners and the admin API, and shuts down
//! gracefully on SIGINT/SIGTERM.

mod admin;
mod listeners;
mod memory;
mod reload;
mod shutdown;

/// jemalloc, not glibc's malloc: a delivery allocates and frees a few small objects, often on two worker
/// threads, and glibc's malloc and free were a quarter of gatewayd's CPU per message. With jemalloc, MessageLoop
/// protobuf used about a fifth less CPU per delivered message, for up to 0.3 KiB more per idle connection
/// (docs/benchmarks.md, "The allocator again").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (its `malloc_conf`, under the prefix tikv-jemalloc-sys builds it with):
/// each thread's cache keeps up to eight slabs' worth of each small size class, at most 1,024 objects (jemalloc's
/// defaults: two slabs' worth, at most 200). A connection's turn holds up to 256 deliveries at once, each with a few
/// small objects of the same sizes; with the default caches every turn sent some back to the arena and fetched them
/// again, a few percent of gatewayd's CPU per message (docs/benchmarks.md, "jemalloc's thread caches"). `MALLOC_CONF`
/// in the environment (`_RJEM_MALLOC_CONF`) is read after this and overrides it.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &u8 = &b"lg_tcache_nslots_mul:3,tcache_nslots_small_max:1024\0"[0];

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use core_bus::trace::TraceHook;
use core_bus::Bus;
use gateway::telemetry::Telemetry;
use gateway::{cluster, config};
use protocols::{ConnectionRegistry, Services};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LogFormat};

#[derive(Parser)]
#[command(name = "gatewayd", version, about = "Multi-protocol messaging gateway")]
struct Cli {
    /// Configuration file (TOML). Repeat to merge more files over it in order, e.g. auth tokens kept in a
    /// Secret: `--config gatewayd.toml --config auth.toml`. Without any, defaults and GATEWAYD_* variables apply.
    #[arg(long, short)]
    config: Vec<PathBuf>,
    /// Log format; overrides `log.format`.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Checks configuration files merged as `--config` merges them (same order, then GATEWAYD_* variables) and
    /// exits non-zero naming the bad key and its file.
    CheckConfig {
        /// Configuration files, in `--config` order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Installs the tracing subscriber and returns the function that changes its level at runtime.
fn init_tracing(config: &Config, format: LogFormat) -> reload::SetLogLevel {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => registry.with(fmt).init(),
        LogFormat::Json => registry.with(fmt.json()).init(),
    }
    Box::new(move |level: &str| {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { files }) = &cli.command {
        return check_config(files);
    }
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let set_log_level = init_tracing(&config, cli.log_format.unwrap_or(config.log.format));
    for warning in config.anonymous_warnings() {
        tracing::warn!("{warning}");
    }
    // Built before the runtime: the exporter's HTTP client blocks.
    let telemetry = match Telemetry::start(&config.tracing) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("tracing: cannot start the OTLP exporter: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let (telemetry, trace_hook) = telemetry.unzip();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().on_thread_park(memory::on_park);
    if let Some(threads) = config.runtime.worker_threads {
        builder.worker_threads(threads.get());
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config, cli.config, set_log_level, trace_hook));
    drop(runtime);
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `gatewayd check-config FILE...`: the same merge and validation as a start.
fn check_config(files: &[PathBuf]) -> ExitCode {
    let names = files
        .iter()
        .map(|file| file.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ");
    match Config::load(files) {
        Ok(config) => {
            for warning in config.anonymous_warnings() {
                eprintln!("warning: {warning}");
            }
            println!("{names}: ok");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    config: Config,
    paths: Vec<PathBuf>,
    set_log_level: reload::SetLogLevel,
    trace_hook: Option<Arc<dyn TraceHook>>,
) -> anyhow::Result<()> {
    let prometheus = metrics_recorder()?;
    protocols::accept::budget::set_cap(config.limits.max_unfinished_frame_bytes);
    let bus = Bus::new(config.bus.clone());
    if let Some(hook) = trace_hook {
        bus.set_trace_hook(hook);
    }
    cluster::start(&config.cluster, &bus).await?;
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
        reloader: Default::default(),
        guard: Arc::new(admin::Guard::new(
            config.admin.load_token()?,
            config.admin.api_reads,
            config.admin.metrics,
        )),
        shutdown: shutdown.clone(),
    };
    let admin_stop = CancellationToken::new();
    let (admin_address, admin_task) =
        admin::serve(config.admin.address, state.clone(), admin_stop.clone()).await?;
    tracing::info!(address = %admin_address, "admin listener bound");

    let (running, reloads) = listeners::start_all(&config, &services).await?;
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
    let reloader = Arc::new(reload::Reloader::new(
        paths,
        config.clone(),
        set_log_level,
        reloads,
    ));
    let _ = state.reloader.set(reloader.clone());
    tokio::spawn(memory::give_back(
        services.connections.clone(),
        shutdown.clone(),
    ));
    ready.store(true, Ordering::Release);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "gatewayd ready");

    let mut signals = shutdown::Signals::new()?;
    let signal = loop {
        match signals.next().await {
            shutdown::Signal::Reload => {
                reloader.reload();
            }
            shutdown::Signal::Stop(name) => break name,
        }
    };
    tracing::info!(signal, "shutting down");
    ready.store(false, Ordering::Release);
    let timeout = Duration::from_secs(config.shutdown.drain_timeout_secs);
    if !shutdown::drain(&shutdown, tasks, timeout).await {
        tracing::warn!(
            ?timeout,
            "drain timeout reached; closing remaining connections"
        );
    }
    admin_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), admin_task).await;
    Ok(())
}

/// The Prometheus recorder. The bus keeps its two histograms and the two inbound counters itself
/// (`core_bus::Bus::render_metrics`), so every metric the exporter holds is a counter or a gauge.
fn metrics_recorder() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    Ok(metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?)
}
