//! `--token` / `--login` (or `GATEWAYCTL_TOKEN` / `GATEWAYCTL_LOGIN`, which `ps` does not show): the credentials
//! the client subcommands present when they connect.

use clap::Args;
use gateway::clients::{Credentials, Protocol};

#[derive(Args, Clone, Default)]
pub struct CredentialArgs {
    /// Token to present: the STOMP passcode, the MessageLoop Connect token, the Loom hello token (a static
    /// token or a JWT). Goomerang and chanserv carry no credentials: there it is ignored and the connection
    /// gets the listener's anonymous identity.
    #[arg(long, env = "GATEWAYCTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// STOMP login (sent with the token as passcode); the other protocols have no login and ignore it.
    #[arg(long, env = "GATEWAYCTL_LOGIN")]
    login: Option<String>,
}

impl CredentialArgs {
    /// The credentials for connections over `protocols`; warns once on stderr for each of them that cannot
    /// carry any, since those connections will be anonymous.
    pub fn for_protocols(&self, protocols: &[Protocol]) -> Credentials {
        let credentials = Credentials {
            login: self.login.clone(),
            token: self.token.clone(),
        };
        if !credentials.is_empty() {
            let mut warned = Vec::new();
            for protocol in protocols {
                if !protocol.carries_credentials() && !warned.contains(protocol) {
                    eprintln!(
                        "gatewayctl: {protocol} carries no credentials; --token/--login ignored (anonymous)"
                    );
                    warned.push(*protocol);
                }
            }
        }
        credentials
    }
}
