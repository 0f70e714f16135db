//! The Python interop harness works: venv from requirements.txt, pytest run, env passed through.

mod support;

#[path = "support/python.rs"]
mod python;

use support::*;

#[test]
fn python_clients_reach_gatewayd() {
    let gateway = Gatewayd::start(&base_config());
    python::pytest(
        "test_smoke.py",
        &[("GATEWAYD_ADMIN", gateway.admin.to_string())],
    );
}
