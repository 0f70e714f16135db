//! The config loader: any file content (TOML or not) is loaded, merged over the defaults and validated without
//! panicking; a config that loads has a valid form (its own TOML loads again to the same config).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use gateway::config::Config;
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static (PathBuf, PathBuf) {
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = std::env::temp_dir();
        let id = std::process::id();
        (
            dir.join(format!("gatewayd-fuzz-config-{id}.toml")),
            dir.join(format!("gatewayd-fuzz-config-{id}-again.toml")),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (path, again) = scratch();
    if std::fs::write(path, data).is_err() {
        return;
    }
    let Ok(config) = Config::load(std::slice::from_ref(path)) else {
        return;
    };
    let Ok(text) = toml::to_string(&config) else {
        return;
    };
    if std::fs::write(again, text).is_ok() {
        let reloaded = Config::load(std::slice::from_ref(again));
        assert_eq!(reloaded.ok().as_ref(), Some(&config));
    }
});
