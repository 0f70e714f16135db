//! `gatewayctl`: asks a running gatewayd's admin API what it is doing.

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
        env = "GATEWAYCTL_ADMIN",
        default_value = "http://127.0.0.1:9091"
    )]
    admin: String,
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
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let path = match cli.command {
        Command::Conns => "/api/connections",
        Command::Topics => "/api/topics",
        Command::Listeners => "/api/listeners",
    };
    let url = format!("{}{path}", cli.admin.trim_end_matches('/'));
    let body: serde_json::Value = reqwest::get(&url).await?.error_for_status()?.json().await?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}
