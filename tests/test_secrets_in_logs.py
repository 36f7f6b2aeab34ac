"""No secret in any log, at DEBUG, on any transport: what the server writes to stderr and its audit file.

The server connects to an etcd with authentication on, as root with a password; HTTP clients use
named tokens. Through the real mcp client it adds users with given and generated passwords, changes
passwords, writes and reads a value, and fails a call that carries a password; raw requests send
wrong tokens. Then neither stderr nor the audit file may hold the etcd password, a token, a given
or generated password, or (stderr) the value: libraries log whole MCP messages at DEBUG.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import uuid4

import httpx2
import pytest
from conftest import EtcdCtl, _make_etcdctl
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.stdio import stdio_client as stdio_transport
from mcp_helpers import call, call_error, http_client, http_server, server_env, sse_session

from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_ports

pytestmark = pytest.mark.anyio


class AuthEtcd:
    def __init__(self, url: str, root_password: str, etcdctl: EtcdCtl) -> None:
        self.url, self.root_password, self._etcdctl = url, root_password, etcdctl

    def __call__(self, *args: str) -> str:
        return self._etcdctl(f"--user=root:{self.root_password}", *args, endpoint=self.url).stdout


@pytest.fixture(scope="module")
def auth_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthEtcd]:
    """An etcd of this module with authentication on: user root, with a password only the server knows."""
    base = tmp_path_factory.mktemp("auth-etcd")
    server = EmbeddedEtcd(base / "data", *free_ports(2), log_file=base / "etcd.log")
    server.start()
    try:
        etcdctl = _make_etcdctl(server.client_url)
        password = f"etcd-root-pw-{uuid4().hex}"
        etcdctl("user", "add", f"root:{password}")
        etcdctl("user", "grant-role", "root", "root")
        etcdctl("auth", "enable")
        yield AuthEtcd(server.client_url, password, etcdctl)
    finally:
        server.stop()


TOKENS = {"ops": f"ops-token-{uuid4().hex}", "reader": f"read-token-{uuid4().hex}"}
TOKEN_SETTINGS = json.dumps(
    [
        {"name": "ops", "scope": "admin", "token": TOKENS["ops"]},
        {"name": "reader", "scope": "read", "token": TOKENS["reader"]},
    ]
)


@asynccontextmanager
async def serve(
    transport: str, etcd: AuthEtcd, stderr: Path, audit: Path, **settings: str
) -> AsyncIterator[tuple[Client, str | None]]:
    """A server at DEBUG over ``transport`` with its stderr in a file, and a client as the admin token."""
    common = {
        "toolsets": "kv,access",
        "hub": "false",
        "username": "root",
        "password": etcd.root_password,
        "audit_file": str(audit),
        "log_level": "DEBUG",
        **settings,
    }
    with stderr.open("w") as errlog:
        if transport == "stdio":
            env = server_env(etcd.url, **common)
            params = StdioServerParameters(command=sys.executable, args=["-m", "kk_etcd_mcp", "serve"], env=env)
            async with Client(stdio_transport(params, errlog=errlog)) as client:
                yield client, None
            return
        with http_server(etcd.url, transport, stderr=errlog, http_tokens=TOKEN_SETTINGS, **common) as server:
            session = http_client if transport == "streamable-http" else sse_session
            async with session(server.url, TOKENS["ops"]) as client:
                yield client, server.url


def refused_requests(url: str, wrong_tokens: list[str]) -> None:
    """Wrong tokens, and the read token on a call above its scope, as raw HTTP."""
    with httpx2.Client(trust_env=False, timeout=30) as http:
        for token in wrong_tokens:
            response = http.post(url, json={}, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 403


@pytest.mark.parametrize(
    ("transport", "settings"),
    [
        ("stdio", {}),
        ("streamable-http", {}),
        ("sse", {}),
        ("sse", {"library_log_level": "DEBUG"}),  # the libraries asked for DEBUG: bodies are withheld even so
    ],
    ids=["stdio", "streamable-http", "sse", "sse, libraries at DEBUG"],
)
async def test_no_secret_in_logs_at_debug(
    auth_etcd: AuthEtcd, tmp_path: Path, key_prefix: str, transport: str, settings: dict[str, str]
) -> None:
    stderr, audit = tmp_path / "stderr.log", tmp_path / "audit.jsonl"
    tag = uuid4().hex[:8]
    given = [f"given-pw-{tag}-1", f"given-pw-{tag}-2", f"duplicate-pw-{tag}"]
    value = f"config-value-{tag}"
    wrong_tokens = [f"wrong-token-{tag}", TOKENS["ops"][:-1]]
    users = [f"given-{tag}", f"generated-{tag}"]
    async with serve(transport, auth_etcd, stderr, audit, **settings) as (client, url):
        await call(client, "user_add", name=users[0], password=given[0])
        generated = [(await call(client, "user_add", name=users[1]))["password"]]
        await call(client, "user_change_password", name=users[0], password=given[1])
        generated.append((await call(client, "user_change_password", name=users[1]))["password"])
        assert "already exists" in await call_error(client, "user_add", name=users[0], password=given[2])
        await call(client, "kv_put", key=f"{key_prefix}cfg", value=value)
        assert (await call(client, "kv_get", key=f"{key_prefix}cfg"))["value"] == value
        if url is not None:
            refused_requests(url, wrong_tokens)
    for user in users:
        auth_etcd("user", "delete", user)

    logged, audited = stderr.read_text(errors="replace"), audit.read_text() if audit.exists() else ""
    assert "kk_etcd_mcp" in logged and "logging kk_etcd_mcp at DEBUG" in logged  # the capture worked, at DEBUG
    assert "user_add" in audited  # and the audit file was written
    if settings.get("library_log_level") == "DEBUG":
        assert "withheld: it may hold secrets" in logged  # the libraries' DEBUG lines were there, without bodies
    secrets = [auth_etcd.root_password, *TOKENS.values(), *wrong_tokens, *given, *generated]
    assert all(len(secret) >= 16 for secret in secrets)
    for secret in secrets:
        assert secret not in logged, f"a secret ({secret[:6]}...) is in stderr"
        assert secret not in audited, f"a secret ({secret[:6]}...) is in the audit file"
    assert value not in logged  # values are data: stderr never shows them (the audit trail may, by its rules)


def test_the_log_filter_withholds_message_bodies_and_quoted_input() -> None:
    """What a library logs with a message body or a validation error (mcp's "Failed to parse message")."""
    from mcp_types import JSONRPCRequest
    from pydantic import ValidationError

    from kk_etcd_mcp.logs import LOG_FORMAT, WithholdMessageBodies, library_level

    body = '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"password": "pw-in-a-body-77f3"}}'
    bad = body.replace('"id": 1', '"id": ["pw-in-an-error-5c2a"]')  # not on the line the traceback quotes
    try:
        JSONRPCRequest.model_validate_json(bad)
    except ValidationError:
        exc_info = sys.exc_info()
    formatter, withhold = logging.Formatter(LOG_FORMAT), WithholdMessageBodies()

    def logged(name: str, msg: str, *args: object, exc: bool = False) -> str:
        record = logging.LogRecord(name, logging.DEBUG, __file__, 1, msg, args, exc_info if exc else None)
        assert withhold.filter(record)
        return formatter.format(record)

    line = logged("mcp.server.sse", "Received JSON: %s", body.encode())
    assert "pw-in-a-body" not in line and line.endswith(
        "Received JSON: [an MCP message of 114 characters, withheld: it may hold secrets]"
    )
    line = logged("mcp.server.sse", "Failed to parse message", exc=True)
    assert "pw-in-an-error" not in line and "input_value=[withheld]" in line and "ValidationError" in line
    assert logged("uvicorn.error", "Started server process [%d]", 7).endswith("Started server process [7]")
    # Our own lines are ours to keep clean: they pass as written.
    assert logged("kk_etcd_mcp.x", "jsonrpc %s", "as is").endswith("jsonrpc as is")
    assert [library_level("DEBUG"), library_level("WARNING"), library_level("DEBUG", "DEBUG")] == [
        "INFO",
        "WARNING",
        "DEBUG",
    ]
