//! Runs the Node.js interop scripts (`tests/node/`) with third-party clients from npm. The packages are
//! installed with `npm install --prefix` into `<target>/node-interop`, next to the gatewayd binary's profile
//! directory, and reinstalled when `tests/node/package.json` changes, so `cargo test` works on a fresh machine
//! that has `node` (20+) and `npm` and can reach the npm registry.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

static NPM_LOCK: Mutex<()> = Mutex::new(());

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// The install directory, running `npm install` first when package.json changed.
pub fn modules() -> PathBuf {
    let _guard = NPM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // `<target>/node-interop`, where `node_modules` lives.
    let dir = super::target_dir("node-interop");
    let wanted = std::fs::read_to_string(node_dir().join("package.json")).expect("package.json");
    let stamp = dir.join("package.stamp");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
        && dir.join("node_modules").exists()
    {
        return dir;
    }
    std::fs::create_dir_all(&dir).expect("create node-interop dir");
    std::fs::write(dir.join("package.json"), &wanted).expect("copy package.json");
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .status()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run npm ({err}): install Node.js 20+ with npm (Debian packages nodejs and npm; \
                 scripts/test.sh installs npm when missing)"
            )
        });
    assert!(
        status.success(),
        "npm install into {} failed",
        dir.display()
    );
    std::fs::write(&stamp, wanted).expect("write stamp");
    dir
}

/// Runs `tests/node/<script>` with `env`; the Rust test fails if the script exits non-zero. Scripts resolve
/// their packages through `NODE_PATH`.
pub fn run(script: &str, env: &[(&str, String)]) {
    let modules = modules().join("node_modules");
    let mut command = Command::new("node");
    command
        .arg(node_dir().join(script))
        .env("NODE_PATH", &modules);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap_or_else(|err| {
        panic!("cannot run node ({err}): install Node.js 20+ (Debian package nodejs)")
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node {script} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("passed"),
        "node {script} ran no test:\n{stdout}"
    );
}
