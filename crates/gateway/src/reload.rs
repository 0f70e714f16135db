//! Hot reload (SIGHUP, `POST /api/reload`, `gatewayctl reload`): re-reads every `--config` file, merged as at
//! start (so a rotated auth file such as a mounted Secret is picked up too), and applies what can change without
//! dropping connections — log level, and each listener's own reloadable settings through its
//! [`protocols::Reload`] — and reports what needs a restart. A section counts as changed when its values differ
//! or when a file its `auth` tables name (a JWT public key) now holds other bytes, so a key rotated in place is
//! applied too.

use std::collections::HashMap;
use std::path::PathBuf;

use parking_lot::Mutex;
use protocols::Reload;
use serde::Serialize;

use crate::config::Config;

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

/// What the running configuration is: its values, and per top-level section the auth files it names.
struct Applied {
    config: Config,
    auth_files: HashMap<String, AuthFiles>,
}

impl Applied {
    fn new(config: Config) -> Applied {
        let auth_files = match toml::Value::try_from(&config) {
            Ok(toml::Value::Table(sections)) => sections
                .iter()
                .map(|(key, value)| (key.clone(), AuthFiles::of(value)))
                .collect(),
            _ => HashMap::new(),
        };
        Applied { config, auth_files }
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
    current: Mutex<Applied>,
    set_log_level: SetLogLevel,
    listeners: Vec<(String, Option<Box<dyn Reload>>)>,
}

impl Reloader {
    pub fn new(
        paths: Vec<PathBuf>,
        current: Config,
        set_log_level: SetLogLevel,
        listeners: Vec<(String, Option<Box<dyn Reload>>)>,
    ) -> Reloader {
        Reloader {
            paths,
            current: Mutex::new(Applied::new(current)),
            set_log_level,
            listeners,
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
        let (Ok(toml::Value::Table(old)), Ok(toml::Value::Table(new))) = (
            toml::Value::try_from(&current.config),
            toml::Value::try_from(&next),
        ) else {
            report.error = Some("configuration cannot be compared".into());
            return report;
        };
        let next = Applied::new(next);
        for (key, value) in &new {
            if old.get(key) == Some(value)
                && current.auth_files.get(key) == next.auth_files.get(key)
            {
                continue;
            }
            match key.as_str() {
                "log" => match (self.set_log_level)(&next.config.log.level) {
                    Ok(()) => report.applied.push("log.level".into()),
                    Err(error) => report.error = Some(format!("log.level: {error}")),
                },
                section => self.reload_section(section, value, &mut report),
            }
        }
        *current = next;
        tracing::info!(applied = ?report.applied, restart_needed = ?report.restart_needed, "configuration reloaded");
        report
    }

    fn reload_section(&self, section: &str, value: &toml::Value, report: &mut ReloadReport) {
        let owners: Vec<&(String, Option<Box<dyn Reload>>)> = self
            .listeners
            .iter()
            .filter(|(name, _)| name.split('.').next() == Some(section))
            .collect();
        if owners.is_empty() || owners.iter().any(|(_, reload)| reload.is_none()) {
            report.restart_needed.push(section.to_owned());
            return;
        }
        for (name, reload) in owners {
            let Some(reload) = reload else { continue };
            match reload.reload(value) {
                Ok(restart) => {
                    report.applied.push(name.clone());
                    report.restart_needed.extend(restart);
                }
                Err(error) => report.error = Some(format!("{name}: {error}")),
            }
        }
    }
}
