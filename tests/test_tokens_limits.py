"""Named bearer tokens with scopes, and the HTTP limits, against real server processes and real etcd.

read / write / admin tokens: what each client is shown and may call, that its name (never its
secret) reaches the tool and the logs, that a session belongs to the token that opened it; the
request body limit (413) and the per-client rate limit (429); JSON/YAML limits through the tools;
and the settings of named tokens (exit code 2, secrets never echoed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx2
import mcp_types
import pytest
from conftest import EtcdCtl
from mcp_helpers import HttpServer, call, call_error, http_client, http_server, server_env, sse_session
from polling import eventually

from kk_etcd_mcp.config_center.formats import MAX_DEPTH
from kk_etcd_mcp.settings import SettingsError, load_settings

pytestmark = pytest.mark.anyio

ADMIN_TOOLS = {"user_add", "user_delete", "role_add", "auth_enable", "cluster_snapshot"}
WRITE_TOOLS = {"kv_put", "kv_delete", "kv_import", "service_register"}
READ_TOOLS = {"kv_get", "kv_list", "kv_export", "service_list", "user_list", "cluster_status"}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def initialize(request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": mcp_types.LATEST_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"},
        },
    }


def raw_post(url: str, token: str | None, body: Any = None, **headers: str) -> httpx2.Response:
    """One POST with exactly these headers (no proxy from the environment); ``body`` defaults to initialize."""
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    content = body if isinstance(body, bytes) else json.dumps(body or initialize()).encode()
    with httpx2.Client(trust_env=False, timeout=30) as http:
        return http.post(url, content=content, headers=MCP_HEADERS | auth | headers)


@dataclass
class Tokens:
    read: str
    write: str
    admin: str

    def settings(self, tmp_path: Path) -> str:
        """KK_ETCD_HTTP_TOKENS: the read token through a token_file, the others inline."""
        token_file = tmp_path / "reader.token"
        token_file.write_text(self.read + "\n")
        return json.dumps(
            [
                {"name": "reader", "scope": "read", "token_file": str(token_file)},
                {"name": "writer", "scope": "write", "token": self.write},
                {"name": "ops", "scope": "admin", "token": self.admin},
            ]
        )

    def all(self) -> list[str]:
        return [self.read, self.write, self.admin]


def new_tokens() -> Tokens:
    return Tokens(read=f"r-{uuid4().hex}", write=f"w-{uuid4().hex}", admin=f"a-{uuid4().hex}")


@dataclass
class ScopedServer:
    server: HttpServer
    tokens: Tokens
    log: Path
    audit: Path

    def audit_entries(self) -> list[dict[str, Any]]:
        text = self.audit.read_text() if self.audit.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def scoped(etcd_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScopedServer]:
    """streamable HTTP with a read, a write and an admin token; stderr and the audit trail in files."""
    tmp = tmp_path_factory.mktemp("scoped")
    tokens = new_tokens()
    log, audit = tmp / "server.log", tmp / "audit.jsonl"
    with (
        log.open("wb") as log_file,
        http_server(
            etcd_endpoint,
            "streamable-http",
            stderr=log_file,
            http_tokens=tokens.settings(tmp),
            audit_file=str(audit),
            confirm_destructive="allow",  # this client cannot be asked; scopes are what is tested here
            log_level="DEBUG",
        ) as server,
    ):
        yield ScopedServer(server, tokens, log, audit)


def tool_names(tools: list[mcp_types.Tool]) -> set[str]:
    return {tool.name for tool in tools}


# Scopes ------------------------------------------------------------------------------------------


async def test_read_token_sees_and_calls_only_read_only_tools(
    scoped: ScopedServer, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    etcdctl("put", f"{key_prefix}app", "v1")
    async with http_client(scoped.server.url, scoped.tokens.read) as client:
        tools = (await client.list_tools()).tools
        assert tool_names(tools) >= READ_TOOLS
        assert not tool_names(tools) & (WRITE_TOOLS | ADMIN_TOOLS)
        for tool in tools:
            assert tool.annotations is not None and tool.annotations.read_only_hint is True, tool.name
        assert (await call(client, "kv_get", key=f"{key_prefix}app"))["value"] == "v1"

        text = await call_error(client, "kv_put", key=f"{key_prefix}app", value="hacked")
        assert "needs scope 'write'" in text and "reader" in text and "Nothing was done" in text
        text = await call_error(client, "kv_delete", key=key_prefix, prefix=True, dry_run=False)
        assert "needs scope 'write'" in text
        assert "needs scope 'admin'" in await call_error(client, "user_add", name=f"u{uuid4().hex[:8]}")
    assert etcdctl("get", "--print-value-only", f"{key_prefix}app").stdout.strip() == "v1"
    refused = [e for e in scoped.audit_entries() if e["client"] == "reader"]
    assert {e["tool"] for e in refused} >= {"kv_put", "kv_delete"}
    assert all(e["outcome"] == "refused" for e in refused)


async def test_write_token_changes_keys_but_not_users(scoped: ScopedServer, key_prefix: str, etcdctl: EtcdCtl) -> None:
    user = f"u{uuid4().hex[:10]}"
    async with http_client(scoped.server.url, scoped.tokens.write) as client:
        names = tool_names((await client.list_tools()).tools)
        assert names >= READ_TOOLS | WRITE_TOOLS
        assert not names & ADMIN_TOOLS
        put = await call(client, "kv_put", key=f"{key_prefix}w", value="by-writer")
        text = await call_error(client, "user_add", name=user)
        assert "needs scope 'admin'" in text and "writer" in text
    assert etcdctl("get", "--print-value-only", f"{key_prefix}w").stdout.strip() == "by-writer"
    assert user not in etcdctl("user", "list").stdout.split()

    # The identity reached the tool: the audit trail names the token, and never holds a secret.
    entries = scoped.audit_entries()
    [written] = [
        e for e in entries if e["tool"] == "kv_put" and e["outcome"] == "ok" and e.get("revision") == put["revision"]
    ]
    assert written["client"] == "writer"
    assert any(e["tool"] == "user_add" and e["client"] == "writer" and e["outcome"] == "refused" for e in entries)


async def test_admin_token_manages_users(scoped: ScopedServer, etcdctl: EtcdCtl) -> None:
    user = f"u{uuid4().hex[:10]}"
    async with http_client(scoped.server.url, scoped.tokens.admin) as client:
        assert tool_names((await client.list_tools()).tools) >= READ_TOOLS | WRITE_TOOLS | ADMIN_TOOLS
        try:
            await call(client, "user_add", name=user, password=f"p-{uuid4().hex}")
            assert user in etcdctl("user", "list").stdout.split()
        finally:
            etcdctl("user", "delete", user)
    assert any(
        e["tool"] == "user_add" and e["client"] == "ops" and e["outcome"] == "ok" for e in scoped.audit_entries()
    )


async def test_wrong_token_is_refused_and_secrets_stay_out_of_logs(scoped: ScopedServer) -> None:
    url, tokens = scoped.server.url, scoped.tokens
    for token in (None, "wrong", tokens.read[:-1], tokens.read + "x", f"{tokens.read} {tokens.write}"):
        refused = raw_post(url, token)
        assert refused.status_code == 403, token
        assert "WWW-Authenticate" not in refused.headers
        assert refused.json()["error"] == "unauthorized"
        assert not any(secret in refused.text for secret in tokens.all())
    for token in tokens.all():
        assert raw_post(url, token).status_code == 200

    logs = scoped.log.read_text(errors="replace")
    assert "bearer tokens: reader (read), writer (write), ops (admin)" in logs  # the capture worked
    audit = scoped.audit.read_text() if scoped.audit.exists() else ""
    for secret in tokens.all():
        assert secret not in logs
        assert secret not in audit


async def test_a_session_belongs_to_the_token_that_opened_it(scoped: ScopedServer) -> None:
    url, tokens = scoped.server.url, scoped.tokens
    opened = raw_post(url, tokens.admin)
    session = opened.headers["mcp-session-id"]
    notified = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert raw_post(url, tokens.admin, notified, **{"Mcp-Session-Id": session}).status_code == 202
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    # Another token cannot ride the admin's session: answered as if it did not exist.
    assert raw_post(url, tokens.read, listing, **{"Mcp-Session-Id": session}).status_code == 404
    assert raw_post(url, tokens.admin, listing, **{"Mcp-Session-Id": session}).status_code == 200


async def test_sse_with_a_read_token(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, tmp_path: Path) -> None:
    tokens = new_tokens()
    with http_server(etcd_endpoint, "sse", http_tokens=tokens.settings(tmp_path)) as server:
        async with sse_session(server.url, tokens.read) as client:
            names = tool_names((await client.list_tools()).tools)
            assert names >= READ_TOOLS and not names & (WRITE_TOOLS | ADMIN_TOOLS)
            assert "needs scope 'write'" in await call_error(client, "kv_put", key=f"{key_prefix}s", value="1")
        async with sse_session(server.url, tokens.write) as client:
            assert "kv_put" in tool_names((await client.list_tools()).tools)
            await call(client, "kv_put", key=f"{key_prefix}s", value="by-writer")
        with pytest.raises(Exception):  # noqa: B017 - the client fails its handshake on the 403
            async with sse_session(server.url, "wrong") as client:
                await client.list_tools()
    assert etcdctl("get", "--print-value-only", f"{key_prefix}s").stdout.strip() == "by-writer"


async def test_single_http_token_is_the_admin_token_named_default(
    etcd_endpoint: str, etcdctl: EtcdCtl, tmp_path: Path
) -> None:
    token, audit = f"tok-{uuid4().hex}", tmp_path / "audit.jsonl"
    with http_server(etcd_endpoint, "streamable-http", http_token=token, audit_file=str(audit)) as server:
        async with http_client(server.url, token) as client:
            assert tool_names((await client.list_tools()).tools) >= ADMIN_TOOLS
            user = f"u{uuid4().hex[:10]}"
            await call(client, "user_add", name=user, password=f"p-{uuid4().hex}")
            etcdctl("user", "delete", user)
    clients = {json.loads(line)["client"] for line in audit.read_text().splitlines()}
    assert clients == {"default"}


# Value limits through the tools ------------------------------------------------------------------


def billion_laughs() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 9):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


async def test_billion_laughs_and_deep_json_are_refused(
    scoped: ScopedServer, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    async with http_client(scoped.server.url, scoped.tokens.write) as client:
        text = await call_error(client, "kv_put", key=f"{key_prefix}lol", value=billion_laughs(), format="yaml")
        assert "billion laughs" in text and "Nothing was written" in text
        text = await call_error(client, "kv_put", key=f"{key_prefix}deep", value=deep, format="json")
        assert f"nests deeper than {MAX_DEPTH} levels" in text and "Nothing was written" in text
        text = await call_error(client, "kv_put", key=f"{key_prefix}deep", value="[" * 100_000, format="json")
        assert f"nests deeper than {MAX_DEPTH} levels" in text
        text = await call_error(client, "kv_put", key=f"{key_prefix}deep", value=deep, format="yaml")
        assert f"nests deeper than {MAX_DEPTH} levels" in text
        # (mcp itself parses a JSON string argument when it can; past its parser's limit the string
        # reaches kv_import, which refuses it instead of crashing.)
        for document in ("[" * 100_000, '{"items": ' * 5_000 + "[]" + "}" * 5_000):
            text = await call_error(client, "kv_import", document=document, dry_run=False)
            assert f"nests deeper than {MAX_DEPTH} levels" in text and "Nothing was written" in text
        assert etcdctl("get", "--prefix", key_prefix).stdout == ""

        # Written by another client, a billion laughs reads back as text, not as data to expand.
        etcdctl("put", f"{key_prefix}lol", billion_laughs())
        got = await call(client, "kv_get", key=f"{key_prefix}lol")
        assert got["format"] == "text" and got.get("data") is None and got["value"] == billion_laughs()


# Body limit --------------------------------------------------------------------------------------


def _session(url: str, token: str) -> dict[str, str]:
    opened = raw_post(url, token)
    assert opened.status_code == 200
    session = {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
    assert raw_post(url, token, {"jsonrpc": "2.0", "method": "notifications/initialized"}, **session).status_code == 202
    return session


def _kv_put(key: str, value: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "kv_put", "arguments": {"key": key, "value": value}},
    }


async def test_request_body_limit(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, tmp_path: Path) -> None:
    limit = 64 * 1024
    tokens = new_tokens()
    with http_server(
        etcd_endpoint, "streamable-http", http_tokens=tokens.settings(tmp_path), http_max_body_bytes=str(limit)
    ) as server:
        session = _session(server.url, tokens.write)
        big = json.dumps(_kv_put(f"{key_prefix}big", "x" * limit)).encode()

        declared = raw_post(server.url, tokens.write, big, **session)  # with Content-Length
        assert declared.status_code == 413
        assert declared.json()["error"] == "request_too_large"
        assert str(limit) in declared.json()["message"] and "http_max_body_bytes" in declared.json()["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            for start in range(0, len(big), 8192):
                yield big[start : start + 8192]

        with httpx2.Client(trust_env=False, timeout=30) as http:
            headers = MCP_HEADERS | session | {"Authorization": f"Bearer {tokens.write}"}
            streamed = http.post(server.url, content=chunks(), headers=headers)
        assert streamed.status_code == 413 and streamed.json()["error"] == "request_too_large"
        assert etcdctl("get", "--prefix", key_prefix).stdout == ""

        # Under the limit, the same session (and the real client) work.
        async with http_client(server.url, tokens.write) as client:
            await call(client, "kv_put", key=f"{key_prefix}small", value="x" * (limit // 2))
    assert etcdctl("get", "--print-value-only", f"{key_prefix}small").stdout.strip() == "x" * (limit // 2)


# Rate limit --------------------------------------------------------------------------------------


async def test_rate_limit_per_token(etcd_endpoint: str, tmp_path: Path) -> None:
    tokens = new_tokens()
    # One request per 4 s on average, two at once: a third quick request is over.
    with http_server(
        etcd_endpoint,
        "streamable-http",
        http_tokens=tokens.settings(tmp_path),
        http_rate_limit="0.25",
        http_rate_burst="2",
    ) as server:
        statuses = [raw_post(server.url, tokens.read).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = raw_post(server.url, tokens.read)
        assert limited.status_code == 429
        retry_after = int(limited.headers["Retry-After"])
        assert 1 <= retry_after <= 4
        body = limited.json()
        assert body["error"] == "rate_limited" and "reader" in body["message"] and "retry after" in body["message"]

        # Buckets are per token: another client is not slowed down by this one.
        assert raw_post(server.url, tokens.write).status_code == 200
        # The SSE stream (GET) does not count.
        with httpx2.Client(trust_env=False, timeout=10) as http:
            get = http.get(
                server.url, headers={"Accept": "text/event-stream", "Authorization": f"Bearer {tokens.read}"}
            )
            assert get.status_code != 429

        # After waiting, requests pass again.
        await eventually(lambda: raw_post(server.url, tokens.read).status_code == 200, "the bucket refilled")


# Settings ----------------------------------------------------------------------------------------


def _serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kk_etcd_mcp", "serve"],
        env=server_env("http://127.0.0.1:1", **env),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([{"name": "a b", "scope": "read", "token": "SECRET-1"}], "token name 'a b'"),
        ([{"name": "x/y", "scope": "read", "token": "SECRET-1"}], "token name 'x/y'"),
        ([{"name": "stdio", "scope": "read", "token": "SECRET-1"}], "reserved"),
        ([{"name": "ci", "scope": "root", "token": "SECRET-1"}], "http_tokens[0].scope"),
        ([{"name": "ci", "scope": "read", "token": "SECRET 1"}], "http_tokens[0].token"),
        ([{"name": "ci", "scope": "read"}], "give token_file (or token)"),
        ([{"name": "ci", "scope": "read", "token": "SECRET-1", "token_file": "/etc/hosts"}], "not both"),
        ([{"name": "ci", "scope": "read", "token_file": "/no/such/file"}], "cannot read token_file /no/such/file"),
        (
            [
                {"name": "ci", "scope": "read", "token": "SECRET-1"},
                {"name": "ci", "scope": "write", "token": "SECRET-2"},
            ],
            "'ci' is used twice",
        ),
        (
            [{"name": "a", "scope": "read", "token": "SECRET-1"}, {"name": "b", "scope": "write", "token": "SECRET-1"}],
            "same secret",
        ),
        ("SECRET-1", "JSON array"),
    ],
)
def test_bad_named_tokens_exit_2_without_echoing_secrets(entries: Any, expected: str) -> None:
    value = entries if isinstance(entries, str) else json.dumps(entries)
    result = _serve({"transport": "streamable-http", "http_tokens": value})
    assert result.returncode == 2, result.stderr
    assert "setting" in result.stderr and expected in result.stderr
    assert "SECRET" not in result.stderr and "Traceback" not in result.stderr


def test_http_token_and_a_token_named_default_clash() -> None:
    tokens = json.dumps([{"name": "default", "scope": "read", "token": "SECRET-1"}])
    result = _serve({"transport": "streamable-http", "http_tokens": tokens, "http_token": "SECRET-2"})
    assert result.returncode == 2 and "'default' is used twice" in result.stderr
    assert "SECRET" not in result.stderr


def test_named_tokens_have_no_flag_and_allow_a_non_loopback_bind(tmp_path: Path) -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "kk_etcd_mcp", "serve", "--help"], capture_output=True, text=True, timeout=30
    )
    assert "--http-tokens" not in helped.stdout and "--http-max-body-bytes" in helped.stdout
    token_file = tmp_path / "t"
    token_file.write_text("from-file\nignored second line\n")
    named = json.dumps([{"name": "ci", "scope": "write", "token_file": str(token_file)}])
    settings = load_settings(env={"KK_ETCD_TRANSPORT": "sse", "KK_ETCD_HOST": "0.0.0.0", "KK_ETCD_HTTP_TOKENS": named})
    [token] = settings.bearer_tokens()
    assert (token.name, token.scope, token.token.get_secret_value()) == ("ci", "write", "from-file")
    assert "from-file" not in repr(settings) and "from-file" not in str(settings.model_dump())
    with pytest.raises(SettingsError, match="without http_token or http_tokens"):
        load_settings(env={"KK_ETCD_TRANSPORT": "sse", "KK_ETCD_HOST": "0.0.0.0"})
    toml = tmp_path / "kk.toml"
    toml.write_text(f'[[http_tokens]]\nname = "dash"\nscope = "read"\ntoken_file = "{token_file}"\n')
    assert [t.name for t in load_settings(config_file=toml, env={}).bearer_tokens()] == ["dash"]
