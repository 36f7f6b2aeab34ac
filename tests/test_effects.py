"""Confirmation by effect, and imports that apply only the plan that was reviewed.

Whatever a tool is called, a call that removes data, access or availability asks the user first
(with a preview naming what is lost) and offers dry_run: a lease over an existing key, a ttl over a
registered instance, a narrower grant, a password change, enabling authentication. Calls that only add
or overwrite run unasked. The server in process (as ``serve`` builds it) with the mcp client; etcdctl is the judge.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from conftest import EtcdCtl
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp_helpers import call, call_error, served
from test_confirm_audit import User, serve

from kk_etcd_mcp.config_center import ConfigCenter, KeyPolicy, KvPutResult
from kk_etcd_mcp.errors import ConflictError
from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, etcd_binary
from kk_etcd_mcp.mcp_server.toolset import ToolRegistrar
from kk_etcd_mcp.registry import RegistryKeys, RegistryService
from kk_etcd_mcp.registry.checkers import Prober

pytestmark = pytest.mark.anyio

NOT_ASKED = "needs the user's confirmation, and this client cannot ask for it"
ROOT_PW, ADMIN_PW, APP_PW = "root-Pw-5512", "admin-Pw-8821", "app-Pw-1177"


def kv(etcdctl: EtcdCtl, key: str) -> dict[str, Any] | None:
    found = json.loads(etcdctl("get", key, "-w", "json").stdout).get("kvs") or []
    return found[0] if found else None


def role_perms(etcdctl: EtcdCtl, role: str) -> str:
    return etcdctl("role", "get", role).stdout


# The calls that remove, whatever their tool -----------------------------------------------------------


async def test_calls_that_remove_something_ask_first_whatever_the_tool(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    p = key_prefix
    tag = p.split("/")[1]
    role, user = f"editor-{tag}", f"app-{tag}"
    etcdctl("put", f"{p}a", "persistent")
    etcdctl("role", "add", role)
    etcdctl("role", "grant-permission", role, "--prefix=true", "readwrite", f"{p}cfg/")
    etcdctl("user", "add", f"{user}:{APP_PW}")
    try:
        async with serve(etcd_endpoint, None, confirm_destructive="elicit", registry_prefix=f"{p}reg/") as client:
            # What only adds or overwrites runs unasked.
            await call(client, "kv_put", key=f"{p}a", value="overwritten")
            created = await call(client, "kv_put", key=f"{p}new", value="v", lease_ttl=600)
            assert created["removes"] == [] and created["lease"] != 0
            await call(client, "service_register", name="web", addr="127.0.0.1:7001", type="tcp")
            fresh = await call(client, "service_register", name="web", addr="127.0.0.1:7002", type="tcp", ttl=600)
            assert fresh["removes"] == [] and fresh["lease"] != 0
            wider = await call(client, "role_grant_permission", role=role, key=f"{p}x", permission="read")
            assert wider["removes"] == []
            await call(client, "role_grant_permission", role=role, key=f"{p}x", permission="readwrite")
            await call(client, "user_grant_role", name=user, role=role)
            registration_before = kv(etcdctl, f"{p}reg/registration_ext/Tcp/web/127.0.0.1:7001")
            assert registration_before is not None

            # What removes is refused (this client cannot ask), and says what it would remove.
            cases: list[tuple[str, dict[str, Any], str]] = [
                ("kv_put", {"key": f"{p}a", "value": "v", "lease_ttl": 30}, f"It removes: key {p}a: it is deleted"),
                (
                    "service_register",
                    {"name": "web", "addr": "127.0.0.1:7001", "type": "tcp", "ttl": 30},
                    "It removes: the tcp instance 127.0.0.1:7001 of service web: it is deregistered when",
                ),
                (
                    "role_grant_permission",
                    {"role": role, "key": f"{p}cfg/", "prefix": True, "permission": "read"},
                    f"It removes: write permission of etcd role {role} on the keys under prefix '{p}cfg/'",
                ),
                (
                    "role_grant_permission",
                    {"role": role, "key": f"{p}x", "permission": "write"},
                    f"It removes: read permission of etcd role {role} on key '{p}x'",
                ),
                (
                    "user_change_password",
                    {"name": user},
                    f"It removes: the current password of etcd user {user}",
                ),
            ]
            for tool, arguments, lost in cases:
                text = await call_error(client, tool, **arguments)
                assert NOT_ASKED in text and lost in text, (tool, text)
                planned = await call(client, tool, dry_run=True, **arguments)
                assert planned["dry_run"] is True and planned["removes"], (tool, planned)
                assert lost.removeprefix("It removes: ") in planned["removes"][0], (tool, planned)
                assert planned.get("password") is None  # a dry run generates no password
            assert (kv(etcdctl, f"{p}a") or {}).get("lease", 0) == 0  # still persistent
            assert kv(etcdctl, f"{p}reg/registration_ext/Tcp/web/127.0.0.1:7001") == registration_before
            perms = role_perms(etcdctl, role)
            assert "KV Read:" in perms and "KV Write:" in perms and f"{p}cfg/" in perms.split("KV Write:")[1]
    finally:
        etcdctl("user", "delete", user)
        etcdctl("role", "delete", role)


async def test_the_question_names_what_is_lost(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    p = key_prefix
    etcdctl("put", f"{p}a", "persistent")
    user = User("decline")
    async with serve(etcd_endpoint, user) as client:
        text = await call_error(client, "kv_put", key=f"{p}a", value="v", lease_ttl=30)
        assert "the user declined kv_put" in text
        [question] = user.asked
        assert question.startswith(f"Confirm kv_put: overwrite key {p}a (mod_revision ")
        assert f"It removes: key {p}a: it is deleted when its new 30-second lease expires." in question
        user.action = "accept"
        done = await call(client, "kv_put", key=f"{p}a", value="v", lease_ttl=30)
        assert done["lease"] == int(kv(etcdctl, f"{p}a")["lease"])  # type: ignore[index]


async def test_a_lease_write_is_refused_when_the_key_changed_while_the_user_decided(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    """The key changed while the user was deciding: the lease write is refused, the key stays persistent."""
    p = key_prefix
    etcdctl("put", f"{p}a", "v1")
    user = User("accept", while_deciding=lambda: etcdctl("put", f"{p}a", "v2"))
    async with serve(etcd_endpoint, user, "legacy") as client:
        text = await call_error(client, "kv_put", key=f"{p}a", value="mine", lease_ttl=30)
        assert "no longer what the user confirmed" in text
    assert (kv(etcdctl, f"{p}a") or {}).get("lease", 0) == 0


# Authentication and passwords, on an etcd of the test's own (auth is switched on) ----------------------


def admin_server(etcd: EmbeddedEtcd, user: User | None, **settings: str) -> AbstractAsyncContextManager[Client]:
    """A server that connects as `admin` (role root), not as root."""
    return served(
        etcd.client_url,
        elicitation=user,
        hub="false",
        toolsets="kv,access",
        username="admin",
        password=ADMIN_PW,
        **settings,
    )


def logs_in(etcd: EmbeddedEtcd, user: str, password: str) -> bool:
    """Whether etcd accepts the user's password (a permission error still means it logged in)."""
    run = subprocess.run(
        [str(etcd_binary("etcdctl")), f"--endpoints={etcd.client_url}", f"--user={user}:{password}", "get", "x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return "authentication failed" not in run.stderr


async def test_auth_enable_and_password_changes_ask_first(own_etcd: EmbeddedEtcd) -> None:
    from conftest import _make_etcdctl

    etcdctl = _make_etcdctl(own_etcd.client_url)
    etcdctl("user", "add", f"root:{ROOT_PW}")
    etcdctl("user", "grant-role", "root", "root")
    etcdctl("user", "add", f"admin:{ADMIN_PW}")
    etcdctl("user", "grant-role", "admin", "root")
    etcdctl("user", "add", f"app:{APP_PW}")

    async with admin_server(own_etcd, None, confirm_destructive="elicit") as client:
        text = await call_error(client, "auth_enable")
        assert NOT_ASKED in text and "It removes: access without credentials" in text
        planned = await call(client, "auth_enable", dry_run=True)
        assert planned["dry_run"] is True and planned["enabled"] is True and planned["changed"] is True
        assert etcdctl("get", "x").returncode == 0  # still open to anonymous clients
        assert (await call(client, "auth_status"))["enabled"] is False

    user = User("accept")
    async with admin_server(own_etcd, user) as client:
        enabled = await call(client, "auth_enable")
        assert enabled["enabled"] is True and len(user.asked) == 1
        assert "Confirm auth_enable: turn etcd authentication on." in user.asked[0]
        with pytest.raises(subprocess.CalledProcessError):
            etcdctl("get", "x")  # anonymous clients are refused now

    async with admin_server(own_etcd, None, confirm_destructive="elicit") as client:
        for name, password in (("app", APP_PW), ("root", ROOT_PW)):
            text = await call_error(client, "user_change_password", name=name)
            assert NOT_ASKED in text and f"It removes: the current password of etcd user {name}" in text
            planned = await call(client, "user_change_password", name=name, dry_run=True)
            assert planned["dry_run"] is True and planned["password"] is None
            assert logs_in(own_etcd, name, password), f"{name}'s password changed"

    user = User("decline")
    async with admin_server(own_etcd, user) as client:
        assert "the user declined user_change_password" in await call_error(client, "user_change_password", name="app")
        assert logs_in(own_etcd, "app", APP_PW)
        user.action = "accept"
        changed = await call(client, "user_change_password", name="app")
        assert changed["password_generated"] is True and logs_in(own_etcd, "app", changed["password"])
        assert not logs_in(own_etcd, "app", APP_PW)
        await call(client, "auth_disable")


# The registrar: a mutating tool cannot leave out its plan -----------------------------------------------


def test_the_registrar_refuses_a_mutating_tool_without_a_plan() -> None:
    tools = ToolRegistrar(MCPServer("t"), read_only=False)

    async def kv_overwrite(key: str) -> KvPutResult:
        raise AssertionError("never called")

    async def kv_truncate(key: str, dry_run: bool = False) -> dict[str, Any]:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="mutating tool kv_overwrite must take dry_run"):
        tools.change("x")(kv_overwrite)
    with pytest.raises(TypeError, match="mutating tool kv_truncate must return a Change"):
        tools.change("x")(kv_truncate)
    assert tools.names == []


# Imports: only the reviewed plan is applied ------------------------------------------------------------


async def test_an_import_applies_only_the_plan_that_was_reviewed(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    p = f"{key_prefix}cfg/"
    etcdctl("put", f"{p}a", "1")
    etcdctl("put", f"{p}b", "2")
    items = [{"key": f"{p}a", "value": "1"}, {"key": f"{p}b", "value": "20"}, {"key": f"{p}c", "value": "3"}]
    document = {"format": "kk-etcd-export/v1", "prefix": p, "revision": 1, "items": items}
    async with serve(etcd_endpoint, None) as client:
        reviewed = await call(client, "kv_import", document=document)
        assert reviewed["plan"] == {"create": [f"{p}c"], "update": [f"{p}b"], "delete": [], "unchanged": [f"{p}a"]}
        fingerprint = reviewed["plan_fingerprint"]

        etcdctl("put", f"{p}a", "concurrent")  # a writer changes a key the plan called unchanged

        text = await call_error(client, "kv_import", document=document, dry_run=False, plan_fingerprint=fingerprint)
        assert "the plan is no longer the one reviewed" in text and "Nothing was written" in text
        assert f"update 2 keys ({p}a, {p}b)" in text  # the plan now
        text = await call_error(client, "kv_import", document=document, dry_run=False)
        assert "applies only a reviewed plan" in text
        assert [kv(etcdctl, f"{p}{k}") for k in "abc"][2] is None
        assert etcdctl("get", f"{p}a", "--print-value-only").stdout.strip() == "concurrent"
        assert etcdctl("get", f"{p}b", "--print-value-only").stdout.strip() == "2"

        again = await call(client, "kv_import", document=document)
        assert again["plan"]["update"] == [f"{p}a", f"{p}b"] and again["plan_fingerprint"] != fingerprint
        applied = await call(
            client, "kv_import", document=document, dry_run=False, plan_fingerprint=again["plan_fingerprint"]
        )
        assert applied["applied"] == 3
    values = {k: etcdctl("get", f"{p}{k}", "--print-value-only").stdout.strip() for k in "abc"}
    assert values == {"a": "1", "b": "20", "c": "3"}


async def test_a_changed_document_needs_a_new_review(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    p = f"{key_prefix}cfg/"
    document = {"format": "kk-etcd-export/v1", "prefix": p, "revision": 1, "items": [{"key": f"{p}a", "value": "1"}]}
    async with serve(etcd_endpoint, None) as client:
        fingerprint = (await call(client, "kv_import", document=document))["plan_fingerprint"]
        document["items"] = [{"key": f"{p}a", "value": "other"}]
        text = await call_error(client, "kv_import", document=document, dry_run=False, plan_fingerprint=fingerprint)
        assert "no longer the one reviewed" in text
    assert kv(etcdctl, f"{p}a") is None


async def test_a_confirmed_replace_import_needs_no_fingerprint(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, tmp_path: Path
) -> None:
    """The user saw the plan in the question: that is the review."""
    p = f"{key_prefix}cfg/"
    etcdctl("put", f"{p}old", "x")
    document = {"format": "kk-etcd-export/v1", "prefix": p, "revision": 1, "items": [{"key": f"{p}a", "value": "1"}]}
    user = User("accept")
    async with serve(etcd_endpoint, user) as client:
        done = await call(client, "kv_import", document=document, mode="replace", dry_run=False)
        assert done["applied"] == 2 and len(user.asked) == 1
        assert f"It removes: key {p}old." in user.asked[0]
    assert kv(etcdctl, f"{p}old") is None and kv(etcdctl, f"{p}a") is not None


# The apply keeps to the plan: a key (or registration) that appeared after an unasked plan -------------


async def test_a_write_on_a_lease_applies_only_over_what_its_plan_saw(etcd_endpoint: str, key_prefix: str) -> None:
    """The plan saw no key (so nobody was asked); one appears before the write: it is not put on the lease."""
    key = f"{key_prefix}a"
    async with EtcdClient([etcd_endpoint]) as etcd, Prober() as prober:
        center = ConfigCenter(etcd, KeyPolicy([key_prefix]))
        plan = await center.put(key, "mine", lease_ttl=60, dry_run=True)
        assert plan.created and plan.removes == []
        await etcd.put(key, "theirs")  # meanwhile
        with pytest.raises(ConflictError, match="changed after kv_put previewed it"):
            await center.put(key, "mine", lease_ttl=60, reviewed=plan)
        stored = await etcd.get(key)
        assert stored is not None and stored.value == b"theirs" and stored.lease == 0

        registry = RegistryService(etcd, RegistryKeys(f"{key_prefix}reg/"), prober)
        planned = await registry.register("web", "127.0.0.1:7", "tcp", ttl=60, dry_run=True)
        assert planned.created and planned.removes == []
        await registry.register("web", "127.0.0.1:7", "tcp")  # meanwhile, persistent
        with pytest.raises(ConflictError, match="changed after it was previewed"):
            await registry.register("web", "127.0.0.1:7", "tcp", ttl=60, reviewed=planned)
        [instance] = await registry.store.instances()
        assert instance.lease == 0
