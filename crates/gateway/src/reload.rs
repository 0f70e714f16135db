//! Hot reload (SIGHUP, `POST /api/reload`, `gatewayctl reload`): re-reads every `--config` file, merged as at
//! start (so a rotated auth file such as a mounted Secret is picked up too), and applies what can change without
//! dropping connections — log level, and each protocol's reloadable settings through its
//! [`protocols::Reload`], which takes the protocol's typed section — and reports what needs a restart. A section counts as changed when its values differ
//! or when a file its `auth` tables name (a JWT public key) now holds other bytes, so a key rotated in place is
//! applied too.

use std::collections::HashMap;
use std::path::PathBuf;

use parking_lot::Mutex;
use protocols::Reload;
use serde::Serialize;

use crate::config::Config;
use crate::listeners::Reloads;

/// Swaps the log filter; built by `main` from the tracing reload handle.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What one reload did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    /// Config keys whose new values are in effect.
    pub applied: Vec<String>,
    /// Config keys that changed but only take effect after a restart.
    pub restart_needed: Vec<String>,
    /// Why the new files were refused (the old configuration stays in effect).
    pub error: Option<String>,
}

/// The running configuration as the reloader compares it: each top-level section's values with the auth files
/// they name, and the log level. `None` from [`Applied::new`]: the configuration cannot be compared.
struct Applied {
    log_level: String,
    sections: HashMap<String, Section>,
}

#[derive(Debug, PartialEq)]
struct Section {
    value: toml::Value,
    auth_files: AuthFiles,
}

impl Applied {
    fn new(config: &Config) -> Option<Applied> {
        let toml::Value::Table(sections) = toml::Value::try_from(config).ok()? else {
            return None;
        };
        let sections = sections
            .into_iter()
            .map(|(key, value)| {
                let auth_files = AuthFiles::of(&value);
                (key, Section { value, auth_files })
            })
            .collect();
        Some(Applied {
            log_level: config.log.level.clone(),
            sections,
        })
    }
}

/// The `*_file` paths inside a section's `auth` tables with what each held (`None`: unreadable).
#[derive(Debug, Default, PartialEq, Eq)]
struct AuthFiles(Vec<(String, Option<Vec<u8>>)>);

impl AuthFiles {
    fn of(section: &toml::Value) -> AuthFiles {
        let mut files = AuthFiles::default();
        files.collect(section, false);
        files
    }

    fn collect(&mut self, value: &toml::Value, in_auth: bool) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    match value {
                        toml::Value::String(path) if in_auth && key.ends_with("_file") => {
                            self.0.push((path.clone(), std::fs::read(path).ok()));
                        }
                        other => self.collect(other, in_auth || key == "auth"),
                    }
                }
            }
            toml::Value::Array(items) => items.iter().for_each(|item| self.collect(item, in_auth)),
            _ => {}
        }
    }
}

pub struct Reloader {
    paths: Vec<PathBuf>,
    current: Mutex<Option<Applied>>,
    set_log_level: SetLogLevel,
    reloads: Reloads,
}

impl Reloader {
    pub fn new(
        paths: Vec<PathBuf>,
        current: Config,
        set_log_level: SetLogLevel,
        reloads: Reloads,
    ) -> Reloader {
        Reloader {
            paths,
            current: Mutex::new(Applied::new(&current)),
            set_log_level,
            reloads,
        }
    }

    pub fn reload(&self) -> ReloadReport {
        let mut report = ReloadReport::default();
        let next = match Config::load(&self.paths) {
            Ok(next) => next,
            Err(error) => {
                report.error = Some(error.to_string());
                tracing::error!(%error, "reload refused; the running configuration stays");
                return report;
            }
        };
        let mut current = self.current.lock();
        let (Some(old), Some(applied)) = (current.as_ref(), Applied::new(&next)) else {
            report.error = Some("configuration cannot be compared".into());
            return report;
        };
        for (key, section) in &applied.sections {
            if old.sections.get(key) == Some(section) {
                continue;
            }
            let reloads = &self.reloads;
            match key.as_str() {
                "log" => match (self.set_log_level)(&applied.log_level) {
                    Ok(()) => report.applied.push("log.level".into()),
                    Err(error) => report.error = Some(format!("log.level: {error}")),
                },
                "stomp" => report.take(key, &reloads.stomp, &next.stomp),
                "goomerang" => report.take(key, &reloads.goomerang, &next.goomerang),
                "loom" => report.take(key, &reloads.loom, &next.loom),
                "chanserv" => report.take(key, &reloads.chanserv, &next.chanserv),
                "messageloop" => report.take(key, &reloads.messageloop, &next.messageloop),
                "mqtt" => report.take(key, &reloads.mqtt, &next.mqtt),
                other => report.restart_needed.push(other.to_owned()),
            }
        }
        *current = Some(applied);
        tracing::info!(applied = ?report.applied, restart_needed = ?report.restart_needed, "configuration reloaded");
        report
    }
}

impl ReloadReport {
    /// Applies `next`, the new version of `section`, through its protocol's `reload`.
    fn take<C>(&mut self, section: &str, reload: &Option<Box<dyn Reload<C>>>, next: &C) {
        let Some(reload) = reload else {
            self.restart_needed.push(section.to_owned());
            return;
        };
        match reload.reload(next) {
            Ok(reloaded) => {
                self.applied.extend(reloaded.applied);
                self.restart_needed.extend(reloaded.restart_needed);
            }
            Err(error) => self.error = Some(error.to_string()),
        }
    }
}
