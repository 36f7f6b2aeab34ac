"""The guards against the real etcd fixture: bearer token and DNS-rebinding checks on the HTTP transports,
secrets kept out of logs and results, and a clean stdout in stdio mode, against real server processes;
read_only and toolsets, tool annotations and allowed/denied key prefixes, against the server in process.
"""

from __future__ import annotations

import base64
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx2
import mcp_types
import pytest
from conftest import EtcdCtl
from mcp_helpers import call, call_error, error_text, http_client, http_server, served, server_env, sse_session

pytestmark = pytest.mark.anyio

READ_ONLY_TOOLS = {"kv_get", "kv_list", "kv_history", "kv_export"}
KV_TOOLS = READ_ONLY_TOOLS | {"kv_put", "kv_delete", "kv_rollback", "kv_import"}
OUTSIDE = "is outside the allowed prefixes"

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": mcp_types.LATEST_PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "0"},
    },
}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def _raw_post(url: str, headers: dict[str, str] | None = None) -> httpx2.Response:
    """One MCP initialize POST with exactly the given extra headers (no proxy from the environment)."""
    with httpx2.Client(trust_env=False, timeout=10) as http:
        return http.post(url, content=json.dumps(INITIALIZE), headers=MCP_HEADERS | (headers or {}))


def _raw_get_status(url: str, headers: dict[str, str] | None = None) -> int:
    """Status of a GET (e.g. the SSE stream) without waiting for its body."""
    with (
        httpx2.Client(trust_env=False, timeout=10) as http,
        http.stream("GET", url, headers={"Accept": "text/event-stream"} | (headers or {})) as response,
    ):
        return response.status_code


# Streamable HTTP: bearer token ---------------------------------------------------------------------


async def test_streamable_http_bearer_token(etcd_endpoint: str, key_prefix: str) -> None:
    token = f"tok-{uuid4().hex}"
    with http_server(etcd_endpoint, "streamable-http", http_token=token) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}, {"Authorization": "Basic x"}):
            refused = _raw_post(server.url, headers)
            # 403, not 401: to an MCP client a 401 means "start OAuth", which this server does not do.
            assert refused.status_code == 403, headers
            assert "WWW-Authenticate" not in refused.headers
            assert "Authorization: Bearer <token>" in refused.json()["message"]
            assert token not in refused.text
        with httpx2.Client(trust_env=False, timeout=10) as http:
            assert http.get(server.url).status_code == 403  # every route, not only POST
        assert _raw_post(server.url, {"Authorization": f"Bearer {token}"}).status_code == 200
        assert _raw_post(server.url, {"Authorization": f"bearer {token}"}).status_code == 200  # RFC 7235

        async with http_client(server.url, token) as client:
            await call(client, "kv_put", key=f"{key_prefix}a", value="1")
            assert (await call(client, "kv_get", key=f"{key_prefix}a"))["value"] == "1"

        with pytest.raises(Exception):  # noqa: B017 - the client fails its handshake on the 403, however it words it
            async with http_client(server.url, "wrong-token") as client:
                await client.list_tools()


async def test_streamable_http_without_token_on_loopback(etcd_endpoint: str, key_prefix: str) -> None:
    with http_server(etcd_endpoint, "streamable-http") as server:
        assert _raw_post(server.url).status_code == 200
        async with http_client(server.url) as client:
            await call(client, "kv_put", key=f"{key_prefix}a", value="open")
            assert (await call(client, "kv_get", key=f"{key_prefix}a"))["value"] == "open"


# SSE -----------------------------------------------------------------------------------------------


async def test_sse_round_trip_with_token(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    token = f"tok-{uuid4().hex}"
    with http_server(etcd_endpoint, "sse", http_token=token) as server:
        assert server.url.endswith("/sse")
        async with sse_session(server.url, token) as client:
            put = await call(client, "kv_put", key=f"{key_prefix}sse", value="via-sse")
            got = await call(client, "kv_get", key=f"{key_prefix}sse")
            assert got["value"] == "via-sse" and got["mod_revision"] == put["revision"]
        assert etcdctl("get", "--print-value-only", f"{key_prefix}sse").stdout.strip() == "via-sse"

        assert _raw_get_status(server.url) == 403
        auth = {"Authorization": f"Bearer {token}"}
        assert _raw_get_status(server.url, auth | {"Host": "evil.example"}) == 421
        assert _raw_get_status(server.url, auth | {"Origin": "http://evil.example"}) == 403


# DNS rebinding -------------------------------------------------------------------------------------


async def test_dns_rebinding_host_and_origin(etcd_endpoint: str) -> None:
    with http_server(
        etcd_endpoint,
        "streamable-http",
        allowed_hosts="proxy.example:8443",
        allowed_origins="https://app.example",
    ) as server:
        port = server.port
        assert _raw_post(server.url, {"Host": "evil.example"}).status_code == 421
        assert _raw_post(server.url, {"Host": f"evil.example:{port}"}).status_code == 421
        assert _raw_post(server.url, {"Host": "127.0.0.1.evil.example"}).status_code == 421
        assert _raw_post(server.url, {"Origin": "http://evil.example"}).status_code == 403
        assert _raw_post(server.url, {"Origin": f"http://evil.example:{port}"}).status_code == 403

        assert _raw_post(server.url, {"Host": "proxy.example:8443"}).status_code == 200  # configured
        assert _raw_post(server.url, {"Origin": "https://app.example"}).status_code == 200  # configured
        assert _raw_post(server.url, {"Host": f"localhost:{port}"}).status_code == 200
        assert _raw_post(server.url, {"Origin": f"http://127.0.0.1:{port}"}).status_code == 200


# read_only, toolsets, annotations ------------------------------------------------------------------


async def test_read_only_offers_only_read_only_tools(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    async with served(etcd_endpoint, read_only="true") as client:
        tools = (await client.list_tools()).tools
        assert {t.name for t in tools} & KV_TOOLS == READ_ONLY_TOOLS
        for tool in tools:  # of every toolset
            assert tool.annotations is not None and tool.annotations.read_only_hint is True, tool.name
        result = await client.call_tool("kv_put", {"key": f"{key_prefix}x", "value": "1"})
        assert result.is_error and "Unknown tool: kv_put" in error_text(result)
        result = await client.call_tool("kv_delete", {"key": f"{key_prefix}x"})
        assert result.is_error and "Unknown tool" in error_text(result)
    assert etcdctl("get", "--prefix", key_prefix).stdout == ""


async def test_toolsets_without_kv_offer_no_kv_tools(etcd_endpoint: str, key_prefix: str) -> None:
    async with served(etcd_endpoint, toolsets="registry,cluster") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert not names & KV_TOOLS
        result = await client.call_tool("kv_get", {"key": f"{key_prefix}x"})
        assert result.is_error and "Unknown tool" in error_text(result)


async def test_every_tool_has_title_and_annotations(etcd_endpoint: str) -> None:
    async with served(etcd_endpoint) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) >= KV_TOOLS
    for name, tool in tools.items():
        assert tool.title, name
        ann = tool.annotations
        assert ann is not None, name
        assert ann.title == tool.title, name
        assert ann.read_only_hint is not None, name
        assert ann.destructive_hint is not None, name
        assert ann.idempotent_hint is not None, name
        assert tool.output_schema is not None, f"{name} has no structured output"
        if ann.read_only_hint:
            assert ann.destructive_hint is False, name
    for name in READ_ONLY_TOOLS:
        assert tools[name].annotations.read_only_hint is True  # type: ignore[union-attr]
    for name in ("kv_put", "kv_delete", "kv_rollback", "kv_import"):
        assert tools[name].annotations.read_only_hint is False  # type: ignore[union-attr]
    for name in ("kv_delete", "kv_import"):
        assert tools[name].annotations.destructive_hint is True  # type: ignore[union-attr]


# allowed_prefixes / denied_prefixes ----------------------------------------------------------------


def _snapshot(etcdctl: EtcdCtl, prefix: str) -> dict[str, tuple[str, int]]:
    """key -> (value, mod_revision) of every key under prefix, as etcdctl sees it."""
    out = json.loads(etcdctl("get", "--prefix", prefix, "-w", "json").stdout)
    return {
        base64.b64decode(kv["key"]).decode(): (base64.b64decode(kv.get("value", "")).decode(), kv["mod_revision"])
        for kv in out.get("kvs", [])
    }


async def test_allowed_and_denied_prefixes(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    app, secret, other = f"{key_prefix}app/", f"{key_prefix}app/secret/", f"{key_prefix}other/"
    etcdctl("put", f"{app}ok", "fine")
    etcdctl("put", f"{secret}pw", "the-secret-value")
    etcdctl("put", f"{other}x", "outside-value")
    etcdctl("put", f"{other}x", "outside-value-2")  # two versions, so a rollback target exists
    before = _snapshot(etcdctl, key_prefix)
    old_revision = before[f"{other}x"][1] - 1

    async with served(etcd_endpoint, allowed_prefixes=app, denied_prefixes=secret) as client:
        for key in (f"{other}x", f"{secret}pw", f"{key_prefix}new"):
            refused = {
                "kv_get": await call_error(client, "kv_get", key=key),
                "kv_put": await call_error(client, "kv_put", key=key, value="hacked"),
                "kv_delete": await call_error(client, "kv_delete", key=key),
                "kv_history": await call_error(client, "kv_history", key=key),
                "kv_rollback": await call_error(client, "kv_rollback", key=key, to_revision=old_revision),
            }
            for tool, text in refused.items():
                assert f"key {key} {OUTSIDE}" in text, (tool, text)
                assert "outside-value" not in text and "the-secret-value" not in text, (tool, text)

        for prefix in (other, secret, key_prefix, app):
            for mode in ("merge", "replace"):
                for dry_run in (True, False):
                    doc = {
                        "format": "kk-etcd-export/v1",
                        "prefix": prefix,
                        "revision": 1,
                        "items": [{"key": f"{prefix}x" if prefix != app else f"{secret}pw", "value": "hacked"}],
                    }
                    text = await call_error(client, "kv_import", document=doc, mode=mode, dry_run=dry_run)
                    assert OUTSIDE in text, (prefix, mode, dry_run, text)
        # replace over the allowed prefix would delete the denied part: refused even with allowed items only
        doc = {
            "format": "kk-etcd-export/v1",
            "prefix": app,
            "revision": 1,
            "items": [{"key": f"{app}ok", "value": "v"}],
        }
        assert OUTSIDE in await call_error(client, "kv_import", document=doc, mode="replace", dry_run=False)

        # prefix deletes that reach outside, or into the denied part, are refused whole
        for prefix in (app, key_prefix, other, secret):
            text = await call_error(client, "kv_delete", key=prefix, prefix=True)
            assert OUTSIDE in text, (prefix, text)

        # reads of a wider prefix show only what is allowed
        listed = await call(client, "kv_list", prefix=key_prefix)
        assert [item["key"] for item in listed["items"]] == [f"{app}ok"]
        listed = await call(client, "kv_list", prefix=app, keys_only=True)
        assert [item["key"] for item in listed["items"]] == [f"{app}ok"]
        exported = await call(client, "kv_export", prefix=key_prefix)
        assert [item["key"] for item in exported["items"]] == [f"{app}ok"]
        for prefix in (other, secret):
            assert OUTSIDE in await call_error(client, "kv_list", prefix=prefix)
            assert OUTSIDE in await call_error(client, "kv_export", prefix=prefix)

        assert _snapshot(etcdctl, key_prefix) == before  # nothing was written by any refused call

        # inside the allowed part everything works
        assert (await call(client, "kv_get", key=f"{app}ok"))["value"] == "fine"
        await call(client, "kv_put", key=f"{app}new", value="2")
        doc = {"format": "kk-etcd-export/v1", "prefix": f"{app}sub/", "revision": 1, "items": []}
        doc["items"] = [{"key": f"{app}sub/a", "value": "1"}]
        fingerprint = (await call(client, "kv_import", document=doc, mode="replace"))["plan_fingerprint"]
        imported = await call(
            client, "kv_import", document=doc, mode="replace", dry_run=False, plan_fingerprint=fingerprint
        )
        assert imported["plan"]["create"] == [f"{app}sub/a"]
        assert (await call(client, "kv_delete", key=f"{app}new"))["deleted"] == 1

    after = _snapshot(etcdctl, key_prefix)
    assert after[f"{other}x"] == before[f"{other}x"]
    assert after[f"{secret}pw"] == before[f"{secret}pw"]
    assert after[f"{app}ok"] == before[f"{app}ok"]


# Secrets -------------------------------------------------------------------------------------------


def _result_texts(result: mcp_types.CallToolResult) -> str:
    return error_text(result) + json.dumps(result.structured_content or {})


async def test_secrets_never_in_logs_or_results(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, tmp_path: Path
) -> None:
    token = f"tok-{uuid4().hex}"
    password = f"pw-{uuid4().hex}"
    log_path = tmp_path / "server.log"
    texts: list[str] = []
    with (
        log_path.open("wb") as log_file,
        http_server(
            etcd_endpoint,
            "streamable-http",
            stderr=log_file,
            http_token=token,
            username="alice",  # etcd auth is off in the fixture: the client is told so and goes on without a token
            password=password,
            log_level="DEBUG",
        ) as server,
    ):
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {password}"}):
            refused = _raw_post(server.url, headers)
            assert refused.status_code == 403
            texts.append(refused.text + json.dumps(dict(refused.headers)))
        rebound = _raw_post(server.url, {"Authorization": f"Bearer {token}", "Host": "evil.example"})
        assert rebound.status_code == 421  # the right token does not lift the Host check
        texts.append(rebound.text)

        async with http_client(server.url, token) as client:
            calls: list[tuple[str, dict[str, Any]]] = [
                ("kv_put", {"key": f"{key_prefix}a", "value": "1"}),
                ("kv_get", {"key": f"{key_prefix}a"}),
                ("kv_list", {"prefix": key_prefix}),
                ("kv_history", {"key": f"{key_prefix}a"}),
                ("kv_export", {"prefix": key_prefix}),
                ("kv_get", {"key": f"{key_prefix}missing"}),  # not found
                ("kv_get", {}),  # missing argument
                ("kv_list", {"prefix": key_prefix, "limit": 0}),  # bad value
                ("kv_put", {"key": f"{key_prefix}j", "value": "{bad", "format": "json"}),
                ("kv_rollback", {"key": f"{key_prefix}a", "to_revision": "x"}),
                ("kv_import", {"document": "not json"}),
                ("no_such_tool", {}),
            ]
            results = [await client.call_tool(name, args) for name, args in calls]
            assert not results[0].is_error, error_text(results[0])  # authentication "not enabled" was handled
            assert results[1].structured_content and results[1].structured_content["value"] == "1"
            assert all(r.is_error for r in results[5:])
            texts.extend(_result_texts(r) for r in results)
            texts.append(json.dumps([t.model_dump(mode="json") for t in (await client.list_tools()).tools]))
    assert etcdctl("get", "--print-value-only", f"{key_prefix}a").stdout.strip() == "1"

    logs = log_path.read_text(errors="replace")
    assert "serving MCP over streamable-http" in logs  # the capture worked
    for secret in (token, password):
        assert secret not in logs
        for text in texts:
            assert secret not in text


# stdio: stdout carries nothing but JSON-RPC ------------------------------------------------------


def _line_reader(stream: Any) -> queue.Queue[bytes]:
    lines: queue.Queue[bytes] = queue.Queue()

    def pump() -> None:
        for line in iter(stream.readline, b""):
            lines.put(line)
        lines.put(b"")  # EOF

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.fixture
def stdio_process(etcd_endpoint: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log_path = tmp_path / "stderr.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "kk_etcd_mcp", "serve"],
            env=server_env(etcd_endpoint, log_level="DEBUG"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
        try:
            yield process, log_path
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def test_stdio_stdout_is_only_json_rpc(
    stdio_process: tuple[subprocess.Popen[bytes], Path], key_prefix: str, etcdctl: EtcdCtl
) -> None:
    process, log_path = stdio_process
    assert process.stdin is not None and process.stdout is not None
    lines = _line_reader(process.stdout)
    seen: list[bytes] = []

    def send(message: dict[str, Any]) -> None:
        assert process.stdin is not None
        process.stdin.write(json.dumps(message).encode() + b"\n")
        process.stdin.flush()

    def wait_for(ids: set[int]) -> None:
        while ids:
            line = lines.get(timeout=20)
            assert line, f"stdout closed while waiting for responses {ids}"
            seen.append(line)
            message = json.loads(line)
            ids.discard(message.get("id"))

    send(INITIALIZE)
    wait_for({1})
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call_tool(request_id: int, name: str, **arguments: Any) -> None:
        send(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": {"name": name, "arguments": arguments},
            }
        )

    send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    call_tool(3, "kv_put", key=f"{key_prefix}s", value="stdio")
    wait_for({2, 3})  # requests run concurrently: read only after the write answered
    call_tool(4, "kv_get", key=f"{key_prefix}s")
    call_tool(5, "kv_get", key=f"{key_prefix}missing")  # a tool error, logged on the way
    call_tool(6, "kv_list", prefix=key_prefix, limit=0)
    send({"jsonrpc": "2.0", "id": 99, "method": "no/such/method"})
    wait_for({4, 5, 6, 99})
    process.stdin.close()  # EOF: the server shuts down
    assert process.wait(timeout=15) == 0
    while (line := lines.get(timeout=5)) != b"":
        seen.append(line)

    assert len(seen) >= 7
    for line in seen:
        message = json.loads(line)  # every stdout line is one JSON-RPC message
        assert message["jsonrpc"] == "2.0", line
        assert ("id" in message and ("result" in message or "error" in message)) or "method" in message, line
    by_id = {m["id"]: m for m in map(json.loads, seen) if "id" in m}
    assert by_id[3]["result"]["isError"] is False
    assert by_id[4]["result"]["structuredContent"]["value"] == "stdio"
    assert by_id[5]["result"]["isError"] is True
    assert "error" in by_id[99]
    assert etcdctl("get", "--print-value-only", f"{key_prefix}s").stdout.strip() == "stdio"

    logs = log_path.read_text(errors="replace")
    assert "serving MCP over stdio" in logs and "connected to etcd 3.5" in logs  # logs go to stderr
