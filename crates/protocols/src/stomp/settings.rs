//! The `[stomp]` section as connections use it: one [`Live`] per transport, built once per start or reload and
//! read on every accept.

use std::sync::Arc;

use super::config::Config;
use super::driver::Timing;
use super::session::Settings;
use crate::auth::Authenticator;
use crate::config::ConfigError;
use crate::limits::ListenerLimits;

/// The STOMP transports, each with its `[stomp.<transport>]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    Tls,
    Ws,
}

impl Transport {
    pub(crate) const ALL: [Transport; 3] = [Transport::Tcp, Transport::Tls, Transport::Ws];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "stomp.tcp",
            Transport::Tls => "stomp.tls",
            Transport::Ws => "stomp.ws",
        }
    }

    pub(crate) fn enabled(self, config: &Config) -> bool {
        match self {
            Transport::Tcp => config.tcp.enabled,
            Transport::Tls => config.tls.enabled,
            Transport::Ws => config.ws.enabled,
        }
    }

    fn limits(self, config: &Config) -> ListenerLimits {
        match self {
            Transport::Tcp => config.tcp.limits,
            Transport::Tls => config.tls.limits,
            Transport::Ws => config.ws.limits,
        }
    }
}

/// What a new connection of one listener gets.
pub(crate) struct Live {
    pub settings: Arc<Settings>,
    pub limits: ListenerLimits,
    pub timing: Timing,
}

/// The [`Live`] settings of every transport for `config`.
pub(crate) fn build(config: &Config) -> Result<Vec<(Transport, Arc<Live>)>, ConfigError> {
    config.validate()?;
    let auth = Arc::new(
        Authenticator::new(config.auth.clone())
            .map_err(|error| ConfigError::from(error).within("stomp"))?
            .for_protocol(core_bus::Protocol::Stomp),
    );
    let ignore_credentials =
        !config.auth.required && config.auth.tokens.is_empty() && config.auth.jwt.is_none();
    let timing = Timing {
        deadlines: config.deadlines,
        write_batch: config.write_batch.max(1),
    };
    Ok(Transport::ALL
        .into_iter()
        .map(|transport| {
            let limits = transport.limits(config);
            let settings = Arc::new(Settings {
                limits: config.limits,
                transactions: config.transactions,
                heart_beat: config.heart_beat,
                unknown_destination: config.unknown_destination,
                default_prefetch: config.default_prefetch,
                max_subscriptions: limits.max_subscriptions_per_connection,
                auth: auth.clone(),
                ignore_credentials,
                server: format!("gatewayd/{}", env!("CARGO_PKG_VERSION")),
                max_durable_subscriptions: config.max_durable_subscriptions,
            });
            let live = Live {
                settings,
                limits,
                timing,
            };
            (transport, Arc::new(live))
        })
        .collect())
}
