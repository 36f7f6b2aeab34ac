"""The registry's keys and the audit trail under ``registry_prefix`` are not the kv tools' to change.

One real server over streamable HTTP with a read, a write and an admin token, the default
``allowed_prefixes = [""]``, the audit trail kept in etcd. Every kv path (tools, the ``etcd://kv/``
resource, subscriptions, import, rollback, prefix delete, leases) must refuse to write under the
registry's root, and reading there needs the scope of the tool that owns the keys: ``audit_log``
(admin) for the audit trail, ``service_list`` (read) for registrations. etcdctl judges what changed.
"""

from __future__ import annotations

import json
from base64 import b64decode
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx2
import mcp_types
import pytest
from conftest import EtcdCtl, keys_under
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_helpers import HttpServer, call, call_error, http_client, http_server

from kk_etcd_mcp.registry import ServiceRegistry

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]

MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@dataclass
class Tokens:
    read: str
    write: str
    admin: str


@dataclass
class Hub:
    server: HttpServer
    tokens: Tokens
    base: str  # this module's keys: <base>app/..., the registry at <base>reg/
    root: str

    @property
    def audit(self) -> str:
        return f"{self.root}audit/"


@pytest.fixture(scope="module")
def served(etcd_endpoint: str, etcdctl: EtcdCtl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("reserved")
    tokens = Tokens(read=f"r-{uuid4().hex}", write=f"w-{uuid4().hex}", admin=f"a-{uuid4().hex}")
    named = [
        {"name": "reader", "scope": "read", "token": tokens.read},
        {"name": "writer", "scope": "write", "token": tokens.write},
        {"name": "ops", "scope": "admin", "token": tokens.admin},
    ]
    base = f"t/{uuid4().hex[:12]}/"
    root = f"{base}reg/"
    with http_server(
        etcd_endpoint,
        "streamable-http",
        http_tokens=json.dumps(named),
        registry_prefix=root,
        audit_to_etcd="true",
        audit_file=str(tmp / "audit.jsonl"),
        hub="false",
    ) as server:
        yield Hub(server, tokens, base, root)
    etcdctl("del", base, "--prefix")


def kvs_under(etcdctl: EtcdCtl, prefix: str) -> dict[str, tuple[str, int, int]]:
    """key -> (value, mod_revision, lease) of every key under ``prefix``."""
    found = json.loads(etcdctl("get", prefix, "--prefix", "-w", "json").stdout).get("kvs") or []
    return {
        b64decode(kv["key"]).decode(): (b64decode(kv["value"]).decode(), kv["mod_revision"], kv.get("lease", 0))
        for kv in found
    }


async def seed(hub: Hub, etcdctl: EtcdCtl) -> tuple[str, str]:
    """A registration and some audit entries, made through the owning tools; returns (registration key, audit key)."""
    async with http_client(hub.server.url, hub.tokens.write) as client:
        await call(client, "service_register", name="api", addr="127.0.0.1:1", type="tcp")
        await call(client, "kv_put", key=f"{hub.base}app/a", value="1")
    registration = f"{hub.root}registration_ext/Tcp/api/127.0.0.1:1"
    assert registration in keys_under(etcdctl, hub.root)
    entries = [key for key in keys_under(etcdctl, hub.audit) if key != f"{hub.audit}head"]
    assert entries, "the audit trail is kept in etcd"
    return registration, entries[-1]


@asynccontextmanager
async def legacy_client(url: str, token: str) -> AsyncIterator[Client]:
    """A handshake-era client (resources/subscribe) with a bearer token."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        yield client


def raw_tool_call(url: str, token: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """tools/call as plain HTTP requests (initialize, initialized, call) with one token; the JSON-RPC result."""

    def post(body: dict[str, Any], session: str | None = None) -> httpx2.Response:
        headers = MCP_HEADERS | {"Authorization": f"Bearer {token}"}
        if session is not None:
            headers["Mcp-Session-Id"] = session
        with httpx2.Client(trust_env=False, timeout=30) as http:
            return http.post(url, content=json.dumps(body).encode(), headers=headers)

    opened = post(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        }
    )
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    answer = post(
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}, session
    )
    assert answer.status_code == 200, answer.text
    if answer.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:].strip() for line in answer.text.splitlines() if line.startswith("data:")]
        messages = [json.loads(d) for d in data if d]
        [reply] = [m for m in messages if m.get("id") == 2]
    else:
        reply = answer.json()
    result: dict[str, Any] = reply["result"]
    return result


def raw_text(result: dict[str, Any]) -> str:
    return " ".join(c.get("text", "") for c in result.get("content", []))


# Reading: the owning tool's scope --------------------------------------------------------------------


async def test_a_read_token_cannot_read_the_audit_trail_through_any_kv_path(served: Hub, etcdctl: EtcdCtl) -> None:
    registration, audit_key = await seed(served, etcdctl)
    async with http_client(served.server.url, served.tokens.read) as client:
        for tool, arguments in [
            ("kv_get", {"key": audit_key}),
            ("kv_history", {"key": audit_key}),
            ("kv_list", {"prefix": served.audit, "include_internal": True}),
            ("kv_list", {"prefix": f"{served.audit}head", "include_internal": True}),
        ]:
            text = await call_error(client, tool, **arguments)
            assert "audit trail" in text and "audit_log" in text and "'admin'" in text, (tool, text)
            assert "Nothing was read" in text
        # A listing across the registry shows its data (service_list needs only 'read') but no audit key.
        listed = await call(client, "kv_list", prefix=served.root, include_internal=True, keys_only=True)
        shown = [item["key"] for item in listed["items"]]
        assert registration in shown
        assert not any(key.startswith(served.audit) for key in shown), shown
        wider = await call(client, "kv_list", prefix=served.base, include_internal=True, keys_only=True)
        assert not any(item["key"].startswith(served.audit) for item in wider["items"])
        assert (await call(client, "kv_get", key=registration))["key"] == registration
        # The resource and exports.
        with pytest.raises(MCPError) as error:
            await client.read_resource(f"etcd://kv/{audit_key}")
        assert "audit_log" in error.value.message
        exported = await call(client, "kv_export", prefix=served.root)
        assert exported["items"] == []  # the registry's keys are never exported
        completed = await client.complete(
            mcp_types.ResourceTemplateReference(uri="etcd://kv/{+key}"), {"name": "key", "value": served.audit}
        )
        assert completed.completion.values == []
    async with legacy_client(served.server.url, served.tokens.read) as client:
        with pytest.raises(MCPError) as error:
            await client.subscribe_resource(f"etcd://kv/{audit_key}")
        assert "audit_log" in error.value.message

    # Plain HTTP, one token of each scope: only admin (audit_log's scope) reads an entry through kv_get.
    url = served.server.url
    for token, allowed in [(served.tokens.read, False), (served.tokens.write, False), (served.tokens.admin, True)]:
        result = raw_tool_call(url, token, "kv_get", {"key": audit_key})
        assert result.get("isError", False) is not allowed, raw_text(result)
        if allowed:
            assert result["structuredContent"]["key"] == audit_key
        else:
            assert "audit_log" in raw_text(result)


async def test_an_admin_token_reads_the_audit_trail_through_kv_tools(served: Hub, etcdctl: EtcdCtl) -> None:
    _, audit_key = await seed(served, etcdctl)
    async with http_client(served.server.url, served.tokens.admin) as client:
        entry = await call(client, "kv_get", key=audit_key)
        assert json.loads(entry["value"])["tool"]
        listed = await call(client, "kv_list", prefix=served.audit, include_internal=True, keys_only=True)
        assert audit_key in [item["key"] for item in listed["items"]]
        # ...but even admin does not write it through the kv tools: only the server itself appends.
        text = await call_error(client, "kv_put", key=audit_key, value="{}")
        assert "audit trail" in text and "Nothing was written" in text


# Writing: never, by any path ---------------------------------------------------------------------------


async def test_a_write_token_cannot_change_the_registry_or_the_audit_trail(served: Hub, etcdctl: EtcdCtl) -> None:
    registration, audit_key = await seed(served, etcdctl)
    endpoint = f"{served.root}endpoints/api/10.9.9.9:50051"
    forged_entry = json.dumps(
        {"time": "2030-01-01T00:00:00Z", "tool": "kv_put", "client": "ops", "arguments": {}, "outcome": "ok"}
    )
    before = kvs_under(etcdctl, served.root)
    old_audit = {k: v for k, v in before.items() if k.startswith(served.audit) and k != f"{served.audit}head"}
    async with http_client(served.server.url, served.tokens.write) as client:
        rev = (await call(client, "kv_get", key=registration))["mod_revision"]
        document = {
            "format": "kk-etcd-export/v1",
            "prefix": served.root,
            "revision": 1,
            "items": [{"key": audit_key, "value": forged_entry}],
        }
        outside_doc = {
            "format": "kk-etcd-export/v1",
            "prefix": served.base,
            "revision": 1,
            "items": [{"key": f"{served.base}app/a", "value": "1"}, {"key": endpoint, "value": "{}"}],
        }
        registry_words = ("service_register", "service_deregister")
        attempts: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
            ("kv_put", {"key": audit_key, "value": forged_entry}, ("audit trail",)),
            ("kv_put", {"key": audit_key, "value": "x", "lease_ttl": 1}, ("audit trail",)),
            ("kv_put", {"key": f"{served.audit}00000000000000000001-forged", "value": forged_entry}, ("audit trail",)),
            ("kv_put", {"key": endpoint, "value": '{"Op":0,"Addr":"10.9.9.9:50051","Metadata":null}'}, registry_words),
            ("kv_put", {"key": registration, "value": "{}", "expected_revision": rev}, registry_words),
            ("kv_put", {"key": f"{served.root}hub/leader/x", "value": "me"}, registry_words),
            ("kv_delete", {"key": audit_key}, ("audit trail",)),
            ("kv_delete", {"key": registration}, registry_words),
            ("kv_delete", {"key": served.root, "prefix": True}, registry_words),
            ("kv_delete", {"key": served.audit, "prefix": True}, ("audit trail",)),
            ("kv_rollback", {"key": audit_key, "to_revision": before[audit_key][1]}, ("audit trail",)),
            ("kv_rollback", {"key": registration, "to_revision": rev}, registry_words),
            ("kv_import", {"document": document, "mode": "merge", "dry_run": False}, ("audit trail",)),
            ("kv_import", {"document": document, "mode": "replace", "dry_run": True}, ("audit trail",)),
            ("kv_import", {"document": outside_doc, "mode": "merge", "dry_run": False}, registry_words),
        ]
        for tool, arguments, words in attempts:
            text = await call_error(client, tool, **arguments)
            assert "Nothing was written" in text, (tool, text)
            assert all(word in text for word in words), (tool, arguments, text)
        # A prefix delete or a replace import that spans the registry keeps the registry's keys.
        spanning = await call(client, "kv_delete", key=served.base, prefix=True)
        assert spanning["keys"] == [f"{served.base}app/a"]

    after = kvs_under(etcdctl, served.root)
    assert {k: v for k, v in after.items() if not k.startswith(served.audit)} == {
        k: v for k, v in before.items() if not k.startswith(served.audit)
    }
    # The audit entries that existed are untouched; the refusals were appended after them.
    assert {k: v for k, v in after.items() if k in old_audit} == old_audit
    assert all(lease == 0 for _, _, lease in after.values())


async def test_a_forged_grpc_endpoint_never_reaches_sdk_clients(
    served: Hub, etcdctl: EtcdCtl, etcd_endpoint: str
) -> None:
    endpoint = f"{served.root}endpoints/pay/10.9.9.9:50051"
    async with http_client(served.server.url, served.tokens.write) as client:
        text = await call_error(
            client, "kv_put", key=endpoint, value='{"Op":0,"Addr":"10.9.9.9:50051","Metadata":null}'
        )
        assert "service_register" in text
    async with ServiceRegistry([etcd_endpoint], prefix=served.root) as registry:
        assert await registry.grpc_endpoints("pay") == []
    assert keys_under(etcdctl, f"{served.root}endpoints/") == []
