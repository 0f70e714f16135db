"""The admin API answers a plain HTTP client: proves the interop harness itself (venv, env passing, pytest)."""
import json
import os
import urllib.request


def test_admin_api_lists_listeners():
    with urllib.request.urlopen(f"http://{os.environ['GATEWAYD_ADMIN']}/api/listeners", timeout=10) as response:
        assert response.status == 200
        assert isinstance(json.load(response), list)
