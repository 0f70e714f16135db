//! gatewayd's configuration: one or more TOML files merged in order (a later file overrides an earlier one key by
//! key, so secrets such as auth tokens can live in a file of their own), `GATEWAYD_`-prefixed environment overrides
//! (`__` separates keys, e.g. `GATEWAYD_ADMIN__ADDRESS`), defaults for everything, and validation that names the
//! offending key and the file it came from.

mod origin;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use core_bus::config::BusConfig;

use crate::cluster::ClusterConfig;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use protocols::config::ConfigError as Invalid;
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub tracing: crate::telemetry::TracingConfig,
    pub shutdown: ShutdownConfig,
    pub runtime: RuntimeConfig,
    pub limits: LimitsConfig,
    pub bus: BusConfig,
    pub cluster: ClusterConfig,
    pub goomerang: protocols::goomerang::Config,
    pub loom: protocols::loom::Config,
    pub chanserv: protocols::chanserv::Config,
    pub messageloop: protocols::messageloop::Config,
    pub stomp: protocols::stomp::Config,
    pub mqtt: protocols::mqtt::Config,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin HTTP listener (`/livez`, `/readyz`, `/metrics`, `/api/...`).
    pub address: SocketAddr,
    /// The bearer token that admin requests present (`Authorization: Bearer ...`). Required, as `token` or
    /// `token_file`, when `address` is not a loopback address.
    pub token: Option<String>,
    /// A file whose contents (surrounding white space trimmed) are the token; read at start-up.
    pub token_file: Option<PathBuf>,
    /// Who may read the JSON API (`GET /api/...`) when a token is set.
    pub api_reads: AdminAccess,
    /// Who may read `/metrics` when a token is set.
    pub metrics: AdminAccess,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 9091)),
            token: None,
            token_file: None,
            api_reads: AdminAccess::Token,
            metrics: AdminAccess::Open,
        }
    }
}

/// Whether an admin endpoint needs the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminAccess {
    /// Anyone who reaches the listener.
    Open,
    /// Only requests with the bearer token (open when no token is configured).
    Token,
}

impl AdminConfig {
    /// The configured token: `token`, or the trimmed contents of `token_file`; `None` when neither is set.
    pub fn load_token(&self) -> Result<Option<String>, ConfigError> {
        let token = match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    "admin.token_file",
                    "set either admin.token or admin.token_file, not both",
                )
                .into())
            }
            (Some(token), None) => token.trim().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    Invalid::new(
                        "admin.token_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
                .trim()
                .to_owned(),
            (None, None) => {
                if !self.address.ip().is_loopback() {
                    return Err(Invalid::new(
                        "admin.token",
                        format!(
                            "required when admin.address ({}) is not a loopback address \
                             (set admin.token or admin.token_file)",
                            self.address
                        ),
                    )
                    .into());
                }
                return Ok(None);
            }
        };
        if token.is_empty() {
            return Err(Invalid::new("admin.token", "must not be empty").into());
        }
        Ok(Some(token))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `gatewayd=debug,info`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long listeners may take to close their connections after SIGINT/SIGTERM.
    pub drain_timeout_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout_secs: 10,
        }
    }
}

/// `[runtime]`: the threads that run every connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads of the runtime; by default one per CPU this process may use (a cgroup quota counts).
    pub worker_threads: Option<NonZeroUsize>,
}

/// `[limits]`: limits of the whole process (each listener's own are in its section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Bytes held in unfinished frames over all connections; past it, large unfinished frames are refused.
    pub max_unfinished_frame_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_unfinished_frame_bytes: protocols::accept::budget::DEFAULT_CAP,
        }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// What the files and variables do not say in the config's shape: one line per problem, each naming its
    /// source and key.
    #[error("{0}")]
    Unreadable(String),
    /// A value that cannot be used, after the source (file or `GATEWAYD_` variables) that holds it when known.
    #[error("{}{error}", origin.as_ref().map(|origin| format!("{origin}: ")).unwrap_or_default())]
    Invalid {
        error: protocols::config::ConfigError,
        origin: Option<String>,
    },
}

impl From<protocols::config::ConfigError> for ConfigError {
    fn from(error: protocols::config::ConfigError) -> Self {
        ConfigError::Invalid {
            error,
            origin: None,
        }
    }
}

impl Config {
    /// Defaults, then each of `paths` in order, then `GATEWAYD_*` environment variables. Tables merge key by key;
    /// any other value, arrays such as `[[stomp.auth.tokens]]` included, is replaced whole by a later source.
    pub fn load(paths: &[PathBuf]) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        for path in paths {
            std::fs::metadata(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("GATEWAYD_").split("__"));
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Unreadable(origin::describe(&figment, e)))?;
        config.validate().map_err(|e| match e {
            ConfigError::Invalid { error, .. } => ConfigError::Invalid {
                origin: origin::source_of(&figment, &error.key),
                error,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Checks what serde cannot: files that must exist and cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.admin.load_token()?;
        self.cluster.validate()?;
        self.tracing.validate()?;
        if self.bus.metered_topics.len() > core_bus::config::MAX_METERED_TOPICS {
            return Err(Invalid::new(
                "bus.metered_topics",
                format!("at most {} patterns", core_bus::config::MAX_METERED_TOPICS),
            )
            .into());
        }
        self.goomerang.validate()?;
        self.loom.validate()?;
        self.chanserv.validate()?;
        self.messageloop.validate()?;
        self.mqtt.validate()?;
        self.stomp.validate()?;
        self.check_anonymous().map(drop)
    }

    /// One warning per listener section whose `allow_anonymous` lets anonymous clients reach topics while
    /// another listener requires credentials (logged at start-up, printed by check-config).
    pub fn anonymous_warnings(&self) -> Vec<String> {
        self.check_anonymous()
            .unwrap_or_default()
            .into_iter()
            .map(|section| {
                format!(
                    "{section}.auth.allow_anonymous: anonymous clients reach topics on {section} while \
                     another listener requires credentials"
                )
            })
            .collect()
    }

    /// The auth section of each enabled listener section.
    fn enabled_auth(&self) -> Vec<(&'static str, &protocols::auth::AuthConfig)> {
        let stomp = &self.stomp;
        let messageloop = &self.messageloop;
        [
            (
                "stomp",
                stomp.tcp.enabled || stomp.tls.enabled || stomp.ws.enabled,
                &stomp.auth,
            ),
            (
                "messageloop",
                messageloop.ws.enabled || messageloop.grpc.enabled,
                &messageloop.auth,
            ),
            ("loom", self.loom.enabled, &self.loom.auth),
            ("goomerang", self.goomerang.enabled, &self.goomerang.auth),
            ("chanserv", self.chanserv.enabled, &self.chanserv.auth),
            ("mqtt", self.mqtt.enabled(), &self.mqtt.auth),
        ]
        .into_iter()
        .filter(|(_, enabled, _)| *enabled)
        .map(|(section, _, auth)| (section, auth))
        .collect()
    }

    /// Refuses anonymous access next to required credentials unless the section says `allow_anonymous`
    /// (those sections are returned), and client-certificate identities where no listener maps them.
    fn check_anonymous(&self) -> Result<Vec<String>, ConfigError> {
        let sections = self.enabled_auth();
        for (section, auth) in &sections {
            if !auth.certificates.is_empty()
                && !matches!(*section, "goomerang" | "loom" | "stomp" | "mqtt")
            {
                return Err(Invalid::new(
                    format!("{section}.auth.certificates"),
                    "only goomerang, loom, stomp and mqtt map client certificates to identities",
                )
                .into());
            }
        }
        Ok(protocols::auth::check_anonymous(&sections).map_err(Invalid::from)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatewayd.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&[path])
    }

    #[test]
    fn worker_threads_default_to_the_runtime_and_are_never_zero() {
        assert_eq!(load_text("").unwrap().runtime.worker_threads, None);
        let one = load_text("[runtime]\nworker_threads = 1\n").unwrap();
        assert_eq!(one.runtime.worker_threads, NonZeroUsize::new(1));
        let zero = load_text("[runtime]\nworker_threads = 0\n")
            .unwrap_err()
            .to_string();
        assert!(zero.contains("runtime.worker_threads"), "{zero}");
    }

    #[test]
    fn later_files_override_keys_and_replace_lists() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("gatewayd.toml");
        let auth = dir.path().join("auth.toml");
        std::fs::write(
            &main,
            "[admin]\naddress = \"127.0.0.1:1\"\n[stomp.auth]\nrequired = false\n\
             [[stomp.auth.tokens]]\ntoken = \"old\"\nidentity = { name = \"old\" }\n",
        )
        .unwrap();
        std::fs::write(
            &auth,
            "[stomp.auth]\nrequired = true\n[[stomp.auth.tokens]]\ntoken = \"new\"\n\
             identity = { name = \"new\" }\n",
        )
        .unwrap();
        let config = Config::load(&[main, auth]).unwrap();
        assert_eq!(config.admin.address.port(), 1);
        assert!(config.stomp.auth.required);
        let tokens: Vec<&str> = config
            .stomp
            .auth
            .tokens
            .iter()
            .map(|t| t.token.as_str())
            .collect();
        assert_eq!(tokens, ["new"]);
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(load_text("").unwrap(), Config::default());
    }

    #[test]
    fn errors_name_the_key() {
        let wrong_type = load_text("[shutdown]\ndrain_timeout_secs = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            wrong_type.contains("shutdown.drain_timeout_secs"),
            "{wrong_type}"
        );
        let unknown = load_text("[admin]\nadress = \"127.0.0.1:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("adress"), "{unknown}");
    }

    #[test]
    fn anonymous_listeners_next_to_required_auth_are_refused() {
        let mixed = "[stomp.auth]\nrequired = true\n[stomp.tcp]\nenabled = true\n\
                     [goomerang]\nenabled = true\n";
        let error = load_text(mixed).unwrap_err().to_string();
        assert!(error.contains("goomerang.auth.allow_anonymous"), "{error}");
        let allowed = format!("{mixed}[goomerang.auth]\nallow_anonymous = true\n");
        let warnings = load_text(&allowed).unwrap().anonymous_warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("goomerang.auth.allow_anonymous"));
        let disabled = "[stomp.auth]\nrequired = true\n[stomp.tcp]\nenabled = true\n\
                        [chanserv.auth]\nrequired = false\n";
        load_text(disabled).unwrap();
    }

    #[test]
    fn example_config_parses() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/gatewayd.toml");
        Config::load(&[path]).unwrap();
    }
}
