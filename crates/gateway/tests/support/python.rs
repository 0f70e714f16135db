//! Runs the Python interop tests (`tests/python/`) with third-party clients from PyPI. The virtualenv lives in the
//! cargo target dir and is (re)built when `tests/python/requirements.txt` changes, so `cargo test` works on a
//! fresh machine that has `python3` with venv support and can reach PyPI.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

static VENV_LOCK: Mutex<()> = Mutex::new(());

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// The venv's python, creating or updating the venv first.
pub fn python() -> PathBuf {
    let _guard = VENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = super::target_dir("interop-venv");
    let requirements = tests_dir().join("python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("requirements.txt");
    let stamp = dir.join("requirements.stamp");
    let python = dir.join("bin/python");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return python;
    }
    let status = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&dir)
        .status()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run python3 ({err}): install the Debian packages python3 and python3-venv \
                 (scripts/test.sh installs what the tests need)"
            )
        });
    assert!(
        status.success(),
        "python3 -m venv failed: install the Debian package python3-venv (scripts/test.sh installs what the \
         tests need)"
    );
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .status()
        .expect("pip install");
    assert!(
        status.success(),
        "pip install -r {} failed",
        requirements.display()
    );
    std::fs::write(&stamp, wanted).expect("write stamp");
    python
}

/// Runs one pytest file from `tests/python/` with `env`, and fails the Rust test if any Python test fails or none
/// ran.
pub fn pytest(file: &str, env: &[(&str, String)]) {
    let python = python();
    let mut command = Command::new(python);
    command
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(tests_dir().join("python").join(file));
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pytest {file} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(" passed"),
        "pytest {file} ran no test:\n{stdout}"
    );
}
