"""The MCP Inspector's CLI (an outside client, from npm) against ``kk-etcd-mcp serve`` over streamable HTTP.

A 401 tells an MCP client to start OAuth (the MCP authorization spec has clients fall back to OAuth
discovery on any 401), and this server does not do OAuth: a missing or wrong bearer token must reach the
user as our message, not as "Interactive OAuth requires a TTY".
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mcp_helpers import http_server
from node_tools import Inspector, inspector

pytestmark = pytest.mark.slow

TOKEN = "inspector-test-token-0123456789"


@pytest.fixture(scope="session")
def inspector_cli() -> Inspector:
    found = inspector()
    if isinstance(found, str):
        pytest.skip(found)
    return found


def run_cli(cli: Inspector, home: Path, *args: str) -> tuple[int, Any]:
    # A fresh HOME: the Inspector keeps a catalog and stored OAuth state there.
    done = subprocess.run(
        cli.command(*args),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,  # no TTY, as in CI or an agent's shell
        env={"HOME": str(home), "PATH": str(cli.node.parent)},
    )
    text = done.stdout.strip() or done.stderr.strip()
    try:
        return done.returncode, json.loads(text)
    except ValueError:
        return done.returncode, text


def test_a_client_without_a_valid_token_is_shown_our_message(
    inspector_cli: Inspector, etcd_endpoint: str, tmp_path: Path
) -> None:
    with http_server(etcd_endpoint, "streamable-http", http_token=TOKEN, hub="false") as server:
        code, listed = run_cli(
            inspector_cli, tmp_path, server.url, "--method", "tools/list", "--header", f"Authorization: Bearer {TOKEN}"
        )
        assert code == 0, listed
        assert "kv_get" in {tool["name"] for tool in listed["tools"]}

        for header in ([], ["--header", "Authorization: Bearer not-a-token"]):
            code, refused = run_cli(inspector_cli, tmp_path, server.url, "--method", "tools/list", *header)
            assert code != 0
            message = json.dumps(refused)
            assert "Interactive OAuth" not in message, refused
            assert "Authorization: Bearer <token>" in message, refused
