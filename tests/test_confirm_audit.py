"""Confirmations of destructive calls, dry runs, and the audit trail, end to end.

The server in process (as ``serve`` builds it) and the mcp client, whose elicitation callback plays the user
(accepting, declining, cancelling); a client without that callback cannot confirm, and then the
server's ``confirm_destructive`` decides. etcdctl reads etcd's state before and after: a refusal
changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
import pytest
from conftest import EtcdCtl, keys_under
from mcp import Client
from mcp_helpers import call, call_error, served
from mcp_types import ElicitRequestParams, ElicitResult

from kk_etcd_mcp.audit import AuditEntry, AuditTrail, EtcdAuditSink, JsonLinesSink, redact
from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.etcd.embedded import free_port
from kk_etcd_mcp.mcp_server.calls import CallGuard, ToolPolicy
from kk_etcd_mcp.mcp_server.errors import Refused
from kk_etcd_mcp.mcp_server.identity import ClientIdentity, acting_as

pytestmark = pytest.mark.anyio

Action = Literal["accept", "decline", "cancel"]
PASSWORD = "Tr0ub4dor-and-3-horses"  # must never reach the audit trail
# Tools some of whose calls remove data, access or availability (each call's plan decides whether it asks).
DESTRUCTIVE = {
    "kv_put",
    "kv_delete",
    "kv_import",
    "service_register",
    "service_deregister",
    "user_change_password",
    "user_delete",
    "user_revoke_role",
    "role_grant_permission",
    "role_delete",
    "role_revoke_permission",
    "auth_enable",
    "auth_disable",
}


class User:
    """Answers the server's confirmation questions as told, and remembers them."""

    def __init__(self, action: Action = "accept", while_deciding: Callable[[], Any] | None = None) -> None:
        self.action: Action = action
        self.asked: list[str] = []
        self.while_deciding = while_deciding  # runs once, at the first question

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        if self.while_deciding is not None:
            await anyio.to_thread.run_sync(self.while_deciding)
            self.while_deciding = None
        content = {"confirm": True} if self.action == "accept" else None
        return ElicitResult(action=self.action, content=content)


def serve(
    endpoint: str, user: User | None = None, protocol: Literal["auto", "legacy"] = "auto", **settings: str
) -> AbstractAsyncContextManager[Client]:
    """A server session; ``user`` answers confirmations (None: the client cannot be asked)."""
    settings.setdefault("hub", "false")
    return served(endpoint, elicitation=user, mode=protocol, **settings)


def state(etcdctl: EtcdCtl, prefix: str) -> str:
    """Everything under ``prefix`` with values and revisions, plus users and roles: what a refusal must not change."""
    kvs = etcdctl("get", prefix, "--prefix", "-w", "json").stdout
    users = etcdctl("user", "list").stdout
    roles = etcdctl("role", "list").stdout
    return json.dumps([json.loads(kvs).get("kvs"), users, roles])


def fill(etcdctl: EtcdCtl, prefix: str, *names: str) -> None:
    for name in names:
        etcdctl("put", f"{prefix}{name}", f"value of {name}")


# Elicitation: the user is shown exactly what changes -------------------------------------------------


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_the_user_confirms_or_refuses_a_prefix_delete(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, protocol: Literal["auto", "legacy"]
) -> None:
    """``auto`` speaks 2026-07-28 (the question rides an InputRequiredResult); ``legacy`` asks mid-call."""
    p = key_prefix
    fill(etcdctl, p, "app/a", "app/b", "app/c", "keep")
    user = User("decline")
    async with serve(etcd_endpoint, user, protocol, confirm_destructive="deny") as client:
        assert (client.protocol_version == "2026-07-28") is (protocol == "auto")
        before = state(etcdctl, p)
        text = await call_error(client, "kv_delete", key=f"{p}app/", prefix=True)
        assert "the user declined kv_delete" in text and "nothing was changed" in text
        assert state(etcdctl, p) == before
        [question] = user.asked
        assert f"delete 3 keys under '{p}app/': {p}app/a, {p}app/b, {p}app/c" in question

        user.action = "cancel"
        assert "the user cancelled kv_delete" in await call_error(client, "kv_delete", key=f"{p}app/", prefix=True)
        assert state(etcdctl, p) == before

        user.action = "accept"
        done = await call(client, "kv_delete", key=f"{p}app/", prefix=True)
        assert done["deleted"] == 3 and done["keys"] == [f"{p}app/a", f"{p}app/b", f"{p}app/c"]
        assert done["dry_run"] is False
        assert keys_under(etcdctl, p) == [f"{p}keep"]
        assert len(user.asked) == 3 and user.asked[2] == question  # the same preview each time

        # Nothing to destroy: nobody is asked.
        nothing = await call(client, "kv_delete", key=f"{p}app/", prefix=True)
        assert nothing["deleted"] == 0 and len(user.asked) == 3


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_a_change_made_while_the_user_decides_is_never_applied_unseen(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, protocol: Literal["auto", "legacy"]
) -> None:
    """2026-07-28 asks again with the new preview; 2025 (asked mid-call) refuses once the answer comes."""
    p = key_prefix
    fill(etcdctl, p, "app/a")
    user = User("accept", while_deciding=lambda: fill(etcdctl, p, "app/new"))
    async with serve(etcd_endpoint, user, protocol) as client:
        if protocol == "legacy":
            text = await call_error(client, "kv_delete", key=f"{p}app/", prefix=True)
            assert "no longer what the user confirmed" in text
            assert f"it would now delete 2 keys under '{p}app/': {p}app/a, {p}app/new" in text
            assert keys_under(etcdctl, p) == [f"{p}app/a", f"{p}app/new"]
            assert len(user.asked) == 1
        else:
            done = await call(client, "kv_delete", key=f"{p}app/", prefix=True)
            assert done["deleted"] == 2 and keys_under(etcdctl, p) == []
            assert len(user.asked) == 2 and f"delete 2 keys under '{p}app/'" in user.asked[1]
    assert f"delete 1 key under '{p}app/': {p}app/a" in user.asked[0]


async def test_the_question_names_the_change_for_every_kind_of_destructive_tool(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    p = key_prefix
    tag = p.split("/")[1]
    alice, role = f"alice-{tag}", f"reader-{tag}"
    fill(etcdctl, p, "cfg/a", "cfg/old")
    etcdctl("role", "add", role)
    etcdctl("role", "grant-permission", role, "--prefix=true", "read", f"{p}cfg/")
    etcdctl("user", "add", f"{alice}:{PASSWORD}")
    etcdctl("user", "grant-role", alice, role)
    user = User("decline")
    try:
        async with serve(etcd_endpoint, user, registry_prefix=f"{p}reg/") as client:
            await call(client, "service_register", name="web", addr="127.0.0.1:1", type="tcp")
            document = {"format": "kk-etcd-export/v1", "prefix": f"{p}cfg/", "revision": 1, "items": []}
            document["items"] = [{"key": f"{p}cfg/a", "value": "new"}]
            before = state(etcdctl, p)
            expected = {
                "kv_delete": ({"key": f"{p}cfg/a"}, f"delete key {p}cfg/a"),
                "kv_import": (
                    {"document": document, "mode": "replace", "dry_run": False},
                    f"import into '{p}cfg/' (replace): update 1 key ({p}cfg/a), delete 1 key ({p}cfg/old)",
                ),
                "service_deregister": (
                    {"name": "web", "addr": "127.0.0.1:1"},
                    f"deregister the tcp instance 127.0.0.1:1 of service web (key {p}reg/registration_ext/Tcp/web/",
                ),
                "user_delete": ({"name": alice}, f"delete etcd user {alice}, who holds roles: {role}"),
                "user_revoke_role": (
                    {"name": alice, "role": role},
                    f"revoke role {role} from etcd user {alice}, who then holds no roles",
                ),
                "role_delete": (
                    {"name": role},
                    f"delete etcd role {role} (key permissions: read on the keys under prefix '{p}cfg/'); "
                    f"the users holding it lose it: {alice}",
                ),
                "role_revoke_permission": (
                    {"role": role, "key": f"{p}cfg/", "prefix": True},
                    f"revoke read permission on the keys under prefix '{p}cfg/' from etcd role {role}",
                ),
            }
            for tool, (arguments, change) in expected.items():
                text = await call_error(client, tool, **arguments)
                assert f"the user declined {tool}" in text, text
                assert change in user.asked[-1], (tool, user.asked[-1])
                assert change in text  # the refusal repeats what would have changed
            assert len(user.asked) == len(expected)
            assert state(etcdctl, p) == before

            # auth is off: auth_disable would change nothing, so it asks nobody.
            disabled = await call(client, "auth_disable")
            assert disabled["changed"] is False and len(user.asked) == len(expected)
    finally:
        etcdctl("user", "delete", alice)
        etcdctl("role", "delete", role)


# Clients that cannot confirm: confirm_destructive decides -------------------------------------------


async def test_without_elicitation_the_setting_decides(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    p = key_prefix
    fill(etcdctl, p, "a", "b")
    before = state(etcdctl, p)
    async with serve(etcd_endpoint, None, confirm_destructive="elicit") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        destructive = {n for n, t in tools.items() if t.annotations and t.annotations.destructive_hint}
        assert destructive == DESTRUCTIVE
        mutating = {n for n, t in tools.items() if t.annotations and not t.annotations.read_only_hint}
        assert destructive < mutating
        for name in mutating:  # dry_run offered; what the server fills in itself is not an argument
            properties = tools[name].input_schema["properties"].keys()
            assert {"dry_run"} <= properties, name
            assert not {"plan", "confirmation", "ctx", "mcp_context", "reviewed"} & properties, name
            assert {"change", "removes", "dry_run"} <= tools[name].output_schema["properties"].keys(), name
        text = await call_error(client, "kv_delete", key=p, prefix=True)
        assert "needs the user's confirmation, and this client cannot ask for it" in text
        assert f"It would delete 2 keys under '{p}': {p}a, {p}b" in text
        assert 'confirm_destructive = "allow"' in text and "KK_ETCD_CONFIRM_DESTRUCTIVE=allow" in text
        # What needs no confirmation still runs: a dry run, a write, a delete of nothing.
        assert (await call(client, "kv_delete", key=p, prefix=True, dry_run=True))["deleted"] == 2
        assert (await call(client, "kv_delete", key=f"{p}missing"))["deleted"] == 0
    assert state(etcdctl, p) == before

    async with serve(etcd_endpoint, None, confirm_destructive="deny") as client:
        text = await call_error(client, "kv_delete", key=p, prefix=True)
        assert "confirm_destructive = deny" in text and "Nothing was changed" in text
    assert state(etcdctl, p) == before

    async with serve(etcd_endpoint, None, confirm_destructive="allow") as client:
        assert (await call(client, "kv_delete", key=p, prefix=True))["deleted"] == 2
    assert keys_under(etcdctl, p) == []


# Dry runs: every destructive tool previews, nothing changes ------------------------------------------


async def test_dry_run_on_every_destructive_tool_changes_nothing(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    p = key_prefix
    tag = p.split("/")[1]
    bob, role = f"bob-{tag}", f"writer-{tag}"
    fill(etcdctl, p, "x/1", "x/2", "y")
    etcdctl("role", "add", role)
    etcdctl("role", "grant-permission", role, "readwrite", f"{p}y")
    etcdctl("user", "add", f"{bob}:{PASSWORD}")
    etcdctl("user", "grant-role", bob, role)
    try:
        # deny: a dry run needs no confirmation, so even this server answers it
        async with serve(etcd_endpoint, None, confirm_destructive="deny", registry_prefix=f"{p}reg/") as client:
            await call(client, "service_register", name="api", addr="127.0.0.1:2", type="tcp")
            exported = await call(client, "kv_export", prefix=f"{p}x/")
            exported["items"] = exported["items"][:1]
            before = state(etcdctl, p)
            previews = {
                "kv_delete": ({"key": f"{p}x/", "prefix": True}, f"delete 2 keys under '{p}x/'"),
                "kv_import": ({"document": exported, "mode": "replace"}, f"delete 1 key ({p}x/2)"),
                "service_deregister": ({"name": "api", "addr": "127.0.0.1:2"}, "deregister the tcp instance"),
                "user_delete": ({"name": bob}, f"delete etcd user {bob}"),
                "user_revoke_role": ({"name": bob, "role": role}, f"revoke role {role} from etcd user {bob}"),
                "role_delete": ({"name": role}, f"delete etcd role {role} (key permissions: readwrite on key '{p}y')"),
                "role_revoke_permission": (
                    {"role": role, "key": f"{p}y"},
                    f"revoke readwrite permission on key '{p}y'",
                ),
                "auth_disable": ({}, "change nothing: etcd authentication already is disabled"),
            }
            for tool, (arguments, change) in previews.items():
                result = await call(client, tool, dry_run=True, **arguments)
                assert result["dry_run"] is True, tool
                assert change in result["change"], (tool, result["change"])
            assert state(etcdctl, p) == before
            deleted = await call(client, "kv_delete", key=f"{p}x/", prefix=True, dry_run=True)
            assert deleted["keys"] == [f"{p}x/1", f"{p}x/2"] and deleted["deleted"] == 2
            assert (await call(client, "user_revoke_role", name=bob, role=role, dry_run=True))["roles"] == []
    finally:
        etcdctl("user", "delete", bob)
        etcdctl("role", "delete", role)


# The audit trail -------------------------------------------------------------------------------------


async def audit_log(client: Client, **arguments: Any) -> list[dict[str, Any]]:
    """audit_log's entries (``call`` cannot pass an argument named ``tool``)."""
    result = await client.call_tool("audit_log", arguments)
    assert not result.is_error and result.structured_content is not None, result
    entries: list[dict[str, Any]] = result.structured_content["entries"]
    return entries


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_every_mutating_call_writes_one_audit_line_with_secrets_redacted(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, tmp_path: Path
) -> None:
    p = key_prefix
    carol = f"carol-{p.split('/')[1]}"
    audit = tmp_path / "audit.jsonl"
    try:
        async with serve(etcd_endpoint, None, confirm_destructive="elicit", audit_file=str(audit)) as client:
            put = await call(client, "kv_put", key=f"{p}a", value="1")
            await call(client, "kv_get", key=f"{p}a")  # read-only: not audited
            await call_error(client, "kv_put", key=f"{p}b", value="{not json", format="json")
            await call(client, "kv_put", key=f"{p}db/password", value=PASSWORD)
            await call(client, "user_add", name=carol, password=PASSWORD)
            await call_error(client, "user_change_password", name=carol, password=PASSWORD + "x")  # not confirmed
            await call(client, "kv_delete", key=f"{p}a", dry_run=True)
            await call_error(client, "kv_delete", key=f"{p}a")  # cannot confirm: refused
        text = audit.read_text()
        assert PASSWORD not in text
        lines = audit_lines(audit)
        assert [(e["tool"], e["outcome"]) for e in lines] == [
            ("kv_put", "ok"),
            ("kv_put", "error"),
            ("kv_put", "ok"),
            ("user_add", "ok"),
            ("user_change_password", "refused"),
            ("kv_delete", "dry_run"),
            ("kv_delete", "refused"),
        ]
        for entry in lines:
            AuditEntry.model_validate(entry)
            assert entry["client"] == "stdio"
        first = lines[0]
        assert first["arguments"]["key"] == f"{p}a"  # what it acts on; the value only as size and hash
        assert first["arguments"]["value"] == {"bytes": 1, "sha256": "6b86b273ff34fce1"}
        assert first["affected"] == [f"{p}a"] and first["revision"] == put["revision"]
        assert "invalid json" in lines[1]["error"] and lines[1]["affected"] == []
        assert lines[2]["arguments"]["value"] == "***"  # the value of a key named like a secret
        assert lines[3]["arguments"]["password"] == "***" and lines[3]["affected"] == [f"user:{carol}"]
        assert lines[4]["arguments"]["password"] == "***"
        assert lines[5]["affected"] == [f"{p}a"] and lines[5]["revision"] is None
        assert "cannot ask for it" in lines[6]["error"]
    finally:
        etcdctl("user", "delete", carol)


async def test_audit_in_etcd_is_bounded_and_audit_log_filters(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    p = key_prefix
    audit_prefix = f"{p}reg/audit/"
    settings = {"registry_prefix": f"{p}reg/", "audit_to_etcd": "true", "audit_etcd_max_entries": "10"}
    async with serve(etcd_endpoint, None, confirm_destructive="allow", **settings) as client:
        for i in range(25):
            await call(client, "kv_put", key=f"{p}k{i}", value=str(i))
            assert len(keys_under(etcdctl, f"{audit_prefix}entry/")) <= 10
        for i in range(3):
            await call(client, "kv_delete", key=f"{p}k{i}")
        assert 1 < len(keys_under(etcdctl, f"{audit_prefix}entry/")) <= 10

        newest = (await call(client, "audit_log", limit=5))["entries"]
        assert [e["tool"] for e in newest] == ["kv_delete"] * 3 + ["kv_put"] * 2
        assert [e["arguments"]["key"] for e in newest] == [f"{p}k2", f"{p}k1", f"{p}k0", f"{p}k24", f"{p}k23"]
        assert [e["time"] for e in newest] == sorted((e["time"] for e in newest), reverse=True)
        deletes = await audit_log(client, tool="kv_delete")
        assert {e["tool"] for e in deletes} == {"kv_delete"} and len(deletes) == 3
        assert await audit_log(client, tool="user_add") == []
        assert "`limit` must be at least 1, got 0" in await call_error(client, "audit_log", limit=0)

    async with serve(etcd_endpoint, None, registry_prefix=f"{p}reg/") as client:
        off = await call(client, "audit_log")
        assert off["enabled"] is False and off["entries"] == []
        assert "audit_to_etcd = false" in off["note"] and "stderr" in off["note"]


async def test_an_audit_write_that_fails_in_etcd_is_logged_and_the_file_keeps_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real etcd client to a port nothing listens on: the entry reaches the file, a warning says etcd missed it."""
    async with EtcdClient([f"http://127.0.0.1:{free_port()}"], request_timeout=0.5) as dead:
        file = JsonLinesSink.open(tmp_path / "audit.jsonl")
        trail = AuditTrail(file, EtcdAuditSink(dead, "kk_service/audit/", 10))
        entry = AuditEntry.model_validate(
            {"time": "2030-01-01T00:00:00Z", "tool": "kv_put", "client": "stdio", "arguments": {}, "outcome": "ok"}
        )
        await trail.record(entry)  # does not raise
    assert audit_lines(tmp_path / "audit.jsonl")[0]["tool"] == "kv_put"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("audit entry for kv_put (ok) was not written to etcd" in w for w in warnings), warnings


async def test_an_audit_line_stays_one_line_whatever_its_arguments_hold(tmp_path: Path) -> None:
    """JSON leaves U+2028, U+2029 and U+0085 raw, and line readers split at them."""
    file = JsonLinesSink.open(tmp_path / "audit.jsonl")
    key = "app/\u2028a\u2029b\x85c"
    entry = AuditEntry.model_validate(
        {
            "time": "2030-01-01T00:00:00Z",
            "tool": "kv_put",
            "client": "stdio",
            "arguments": {"key": key},
            "outcome": "ok",
        }
    )
    await file.write(entry)
    text = (tmp_path / "audit.jsonl").read_text(encoding="utf-8")
    assert len(text.splitlines()) == 1
    assert json.loads(text)["arguments"]["key"] == key


# Units: redaction, scope at call time -----------------------------------------------------------------


def test_redact_hides_secrets_and_values_and_cuts_long_names() -> None:
    cleaned = redact(
        {
            "name": "alice",
            "password": "p",
            "check": {"http_token": "t", "addr": "x"},
            "document": {"items": [{"key": "app/api_key", "value": "k"}, {"key": "app/host", "value": "h"}]},
            "value": "v" * 500,
            "key": "k" * 500,
            "roles": [str(i) for i in range(30)],
        }
    )
    assert cleaned["name"] == "alice" and cleaned["password"] == "***"
    for content in ("check", "document", "value"):  # what the call writes: size and hash only
        assert set(cleaned[content]) == {"bytes", "sha256"}, content
    assert cleaned["value"]["bytes"] == 500
    assert cleaned["key"].endswith("... (500 characters)") and len(cleaned["key"]) < 250
    assert len(cleaned["roles"]) == 21 and cleaned["roles"][-1] == "... 10 more"
    assert redact({"password": None}) == {"password": None}  # "not given" is no secret


async def test_a_client_without_the_scope_is_refused_before_the_tool_runs(tmp_path: Path) -> None:
    ran: list[str] = []

    async def kv_put(key: str) -> str:
        ran.append(key)
        return key

    trail = AuditTrail(JsonLinesSink.open(tmp_path / "audit.jsonl"))
    guard, policy = CallGuard(4, trail), ToolPolicy("kv_put", "write", mutating=True)
    needs_write = r"kv_put needs scope 'write', and this client \(ci-reader\) has scope 'read'"
    with acting_as(ClientIdentity("ci-reader", "read")), pytest.raises(Refused, match=needs_write):
        await guard.run(policy, {"key": "app/x"}, lambda: kv_put("app/x"))
    with acting_as(ClientIdentity("ci-writer", "write")):
        assert await guard.run(policy, {"key": "app/y"}, lambda: kv_put("app/y")) == "app/y"
    assert ran == ["app/y"]
    entries = audit_lines(tmp_path / "audit.jsonl")
    assert [(e["client"], e["outcome"]) for e in entries] == [("ci-reader", "refused"), ("ci-writer", "ok")]
