//! `--token` / `--login` (or `GATEWAYCTL_TOKEN` / `GATEWAYCTL_LOGIN`, which `ps` does not show): the credentials
//! the client subcommands present when they connect.

use clap::Args;
use clients::Credentials;

#[derive(Args, Clone, Default)]
pub struct CredentialArgs {
    /// Token to present (a static token or a JWT): the STOMP passcode, the MessageLoop Connect token, the Loom
    /// hello token, the Goomerang upgrade's `Authorization: Bearer`, the chanserv `AUTH` line, the MQTT password.
    #[arg(long, env = "GATEWAYCTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// STOMP login (sent with the token as passcode), MQTT user name; the other protocols have no login and ignore
    /// it.
    #[arg(long, env = "GATEWAYCTL_LOGIN")]
    login: Option<String>,
}

impl CredentialArgs {
    /// The credentials client connections present.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            login: self.login.clone(),
            token: self.token.clone(),
        }
    }
}
