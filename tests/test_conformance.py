"""The official MCP conformance suite (npm ``@modelcontextprotocol/conformance``) as an outside judge.

Its server scenarios drive ``kk-etcd-mcp serve`` over streamable HTTP as a client would. Only the
scenarios that apply to any server run here: the others call test fixtures of the suite's own
"everything" server (``test://watched-resource``, ``test_image_content`` ...) that this server does not
have. The suite (0.1.16) has no authorization scenarios for servers: its ``auth/*`` scenarios judge
clients, so the OAuth resource server is judged by tests/test_oauth.py against a real provider.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_helpers import http_server
from node_tools import NodeModule, conformance

APPLICABLE = [
    "server-initialize",
    "ping",
    "tools-list",
    "logging-set-level",
    "resources-list",
    "prompts-list",
    "dns-rebinding-protection",
]


@pytest.fixture(scope="module")
def suite() -> NodeModule:
    found = conformance()
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture(scope="module")
def server_url(etcd_endpoint: str) -> Iterator[str]:
    with http_server(etcd_endpoint, hub="false") as server:
        yield server.url


@pytest.mark.parametrize("scenario", APPLICABLE)
def test_conformance_scenario_passes(suite: NodeModule, server_url: str, scenario: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(suite.node), str(suite.entry), "server", "--url", server_url, "--scenario", scenario],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),  # it writes its results/ there
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert " 0 failed" in report and "Passed: " in report, report
