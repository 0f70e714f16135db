//! `gatewayctl`: asks a running gatewayd's admin API what it is doing, talks to it over any of its protocols
//! (`pub`, `sub`, `req`, `reply`), follows what passes on topics (`tap`), and measures it (`bench`, `bench conns`). The client subcommands present
//! `--token`/`--login` (or `GATEWAYCTL_TOKEN`/`GATEWAYCTL_LOGIN`) to listeners that require auth.

mod admin;
mod bench;
mod credentials;
mod out;
mod pubsub;
mod tap;

/// jemalloc, as in gatewayd: a bench client allocates and frees a few small objects per message on several worker
/// threads. glibc's malloc and free were about an eighth of its CPU under MessageLoop JSON, and they were what
/// limited nats-server's side of the 16 B bench rows (docs/benchmarks.md, "MessageLoop JSON, the bench client's
/// allocator, and the gRPC lane").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gatewayctl",
    version,
    about = "Command-line client for gatewayd"
)]
struct Cli {
    /// Base URL of gatewayd's admin listener.
    #[arg(
        long,
        global = true,
        env = "GATEWAYCTL_ADMIN",
        default_value = "http://127.0.0.1:9091"
    )]
    admin: String,
    /// The admin listener's bearer token (`[admin] token`); prefer the environment variable, which `ps` does not
    /// show.
    #[arg(
        long,
        global = true,
        env = "GATEWAYCTL_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists live connections.
    Conns,
    /// Lists topics with subscribers and groups.
    Topics,
    /// Lists bound listeners.
    Listeners,
    /// Re-reads gatewayd's configuration file and applies what can change at runtime (like SIGHUP).
    Reload,
    /// Shows gatewayd's process id and resident memory.
    Process,
    /// Publishes messages on a topic.
    Pub(pubsub::PubArgs),
    /// Subscribes to a topic and prints what arrives.
    Sub(pubsub::SubArgs),
    /// Sends a request and prints the reply (STOMP, MessageLoop, Goomerang).
    Req(pubsub::ReqArgs),
    /// Answers requests that arrive on a topic (STOMP: it sees `reply-to`).
    Reply(pubsub::ReplyArgs),
    /// Measures throughput and latency (or, with `conns`, memory per idle connection).
    Bench(bench::BenchArgs),
    /// Follows every message on the topics a canonical pattern matches, whatever protocol published it.
    Tap(tap::TapArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gatewayctl: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let admin = admin::Admin::new(&cli.admin, cli.admin_token.as_deref());
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Conns => admin.show("GET", "/api/connections").await,
            Command::Topics => admin.show("GET", "/api/topics").await,
            Command::Listeners => admin.show("GET", "/api/listeners").await,
            Command::Reload => admin.show("POST", "/api/reload").await,
            Command::Process => admin.show("GET", "/api/process").await,
            Command::Pub(args) => pubsub::publish(&admin, args).await,
            Command::Sub(args) => pubsub::subscribe(&admin, args).await,
            Command::Req(args) => pubsub::request(&admin, args).await,
            Command::Reply(args) => pubsub::reply(&admin, args).await,
            Command::Bench(args) => bench::run(&admin, args).await,
            Command::Tap(args) => tap::run(&admin, args).await,
        }
    });
    // Reader tasks of open connections must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) if error.is::<out::Closed>() => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gatewayctl: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
