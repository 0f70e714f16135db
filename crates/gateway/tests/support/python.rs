//! A Python virtual environment for interop tests with independent client libraries: created once under the
//! target dir (`$CARGO_TARGET_DIR/interop-venv`, else `<repo>/target/interop-venv`) with `python3 -m venv`,
//! and packages installed with pip when a test needs ones it does not have yet.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// Serialises venv creation and installs between tests of one process.
static VENV: Mutex<()> = Mutex::new(());

/// Lists what has been installed, one package per line.
const INSTALLED: &str = "gatewayd-installed.txt";

pub fn venv_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("interop-venv")
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The venv's python, with `packages` (pip requirement names) installed.
pub fn python_with(packages: &[&str]) -> PathBuf {
    let _guard = VENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = venv_dir();
    let python = dir.join("bin/python");
    if !python.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&dir));
    }
    let marker = dir.join(INSTALLED);
    let installed = std::fs::read_to_string(&marker).unwrap_or_default();
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !installed.lines().any(|line| line == *p))
        .collect();
    if !missing.is_empty() {
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(&missing));
        let mut all = installed;
        for package in missing {
            all.push_str(package);
            all.push('\n');
        }
        std::fs::write(&marker, all).expect("write the venv marker");
    }
    python
}

/// Runs `pytest` on `script` with `env`, in a venv that has pytest plus `packages`.
pub fn pytest(script: &Path, packages: &[&str], env: &[(&str, String)]) -> Output {
    let mut all = vec!["pytest"];
    all.extend_from_slice(packages);
    let python = python_with(&all);
    let mut command = Command::new(python);
    command
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(script);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run pytest")
}
