//! Hot reload (SIGHUP, `POST /api/reload`, `gatewayctl reload`): re-reads every `--config` file, merged as at
//! start (so a rotated auth file such as a mounted Secret is picked up too), and applies what can change without
//! dropping connections — log level, and each listener's own reloadable settings through its
//! [`protocols::Reload`] — and reports what needs a restart.

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

pub struct Reloader {
    paths: Vec<PathBuf>,
    current: Mutex<Config>,
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
            current: Mutex::new(current),
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
            toml::Value::try_from(&*current),
            toml::Value::try_from(&next),
        ) else {
            report.error = Some("configuration cannot be compared".into());
            return report;
        };
        for (key, value) in &new {
            if old.get(key) == Some(value) {
                continue;
            }
            match key.as_str() {
                "log" => match (self.set_log_level)(&next.log.level) {
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
