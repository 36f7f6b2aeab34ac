"""Prometheus metrics: ``/metrics`` on the HTTP transports behind the token check, and the hub's own port.

Scrapes are parsed with prometheus-client's own parser (an outside reader of the exposition format), and
the counters must move with what the server did between two scrapes.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import httpx2
import pytest
from hub_processes import metric_samples
from mcp_helpers import call, call_error, http_client, http_server, server_env

pytestmark = pytest.mark.anyio


def scrape(url: str, token: str | None, **extra_headers: str) -> httpx2.Response:
    headers = ({"Authorization": f"Bearer {token}"} if token else {}) | extra_headers
    with httpx2.Client(trust_env=False, timeout=30) as http:
        return http.get(url, headers=headers)


async def test_metrics_need_a_token_and_count_tool_calls(etcd_endpoint: str, key_prefix: str, tmp_path: Path) -> None:
    reader = f"r-{uuid4().hex}"
    tokens = json.dumps([{"name": "reader", "scope": "read", "token": reader}])
    with http_server(etcd_endpoint, "streamable-http", http_tokens=tokens, hub="false") as server:
        url = f"http://127.0.0.1:{server.port}/metrics"
        for token in (None, "wrong"):
            refused = scrape(url, token)
            assert refused.status_code == 403 and "bearer token" in refused.json()["message"]
            assert "kk_etcd_mcp" not in refused.text

        first = scrape(url, reader)
        assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain")
        before = metric_samples(first.text)
        listed = "kk_etcd_mcp_tool_calls_total{outcome=ok,tool=kv_list}"
        durations = "kk_etcd_mcp_tool_call_duration_seconds_count{tool=kv_list}"
        failed = "kk_etcd_mcp_tool_calls_total{outcome=error,tool=kv_get}"

        async with http_client(server.url, reader) as client:
            for _ in range(3):
                await call(client, "kv_list", prefix=key_prefix)
            await call_error(client, "kv_get", key=f"{key_prefix}absent")

        after = metric_samples(scrape(url, reader).text)
        assert after[listed] == before.get(listed, 0) + 3
        assert after[durations] == before.get(durations, 0) + 3
        assert after[failed] == before.get(failed, 0) + 1

        # DNS rebinding: a page on another name that resolves here is refused, with a valid token too.
        rebound = scrape(url, reader, Host=f"attacker.example:{server.port}")
        assert rebound.status_code == 421 and "kk_etcd_mcp" not in rebound.text
        assert scrape(url, reader, Origin="http://attacker.example").status_code == 403


def test_hub_metrics_port_taken_is_one_clear_line(etcd_endpoint: str, key_prefix: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "kk_etcd_mcp", "hub", "--metrics-port", str(port)]
        env = server_env(etcd_endpoint, registry_prefix=f"{key_prefix}kk_service/")
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}: address already in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("flag", "value"), [("--metrics-port", "0"), ("--hub-weight", "0"), ("--hub-mode", "solo")])
def test_bad_hub_settings_exit_2_with_one_line(etcd_endpoint: str, flag: str, value: str) -> None:
    command = [sys.executable, "-m", "kk_etcd_mcp", "hub", flag, value]
    done = subprocess.run(command, env=server_env(etcd_endpoint), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and flag.removeprefix("--").replace("-", "_") in done.stderr, done.stderr
