"""The access toolset end to end: the server in process (as ``serve`` builds it), the mcp client, a real etcd.

Authentication is switched on and off here, so these tests use an etcd of their own (one per module,
plus one with a short token TTL), never the session etcd. etcdctl sets up and checks etcd's users,
roles and auth state independently of the code under test. The ``ctl`` fixture gives every test an
etcd with auth off and no users, roles or keys, and puts it back that way afterwards.
Tests of what the server logs run the real ``kk-etcd-mcp serve`` over stdio and read its stderr.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import EtcdCtl
from etcd34_proxy import etcd34_proxy
from etcd_under_test import is_34, make_etcd
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.stdio import stdio_client as stdio_transport
from mcp_helpers import call, call_error, served, server_env

from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_ports

pytestmark = pytest.mark.anyio


ROOT_PW = "root-pw-3f9a"  # root's password where etcdctl creates root; generated ones are used elsewhere

ACCESS_TOOLS = {
    # name: (read_only, destructive, idempotent)
    "auth_status": (True, False, True),
    "user_list": (True, False, True),
    "user_get": (True, False, True),
    "role_list": (True, False, True),
    "role_get": (True, False, True),
    "auth_enable": (False, True, True),  # locks out clients without credentials
    "auth_disable": (False, True, True),
    "user_add": (False, False, False),
    "user_change_password": (False, True, False),  # the old password stops working
    "user_grant_role": (False, False, True),
    "user_revoke_role": (False, True, True),
    "user_delete": (False, True, True),
    "role_add": (False, False, False),
    "role_grant_permission": (False, True, True),  # a narrower grant takes the rest away
    "role_revoke_permission": (False, True, True),
    "role_delete": (False, True, True),
}


def outcome(result: dict[str, Any]) -> dict[str, Any]:
    """A mutating result without what every one carries (dry_run, change, removes, changed)."""
    return {k: v for k, v in result.items() if k not in ("dry_run", "change", "removes", "changed")}


# etcd under test and etcdctl -------------------------------------------------------------------------


def _start_etcd(base: Path, *extra_args: str) -> EmbeddedEtcd:
    client_port, peer_port = free_ports(2)
    server = make_etcd(base / "data", client_port, peer_port, log_file=base / "etcd.log", extra_args=extra_args)
    server.start()
    return server


@pytest.fixture(scope="module")
def access_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEtcd]:
    """This module's own etcd: tests switch its authentication on and off."""
    server = _start_etcd(tmp_path_factory.mktemp("access-etcd"))
    try:
        yield server
    finally:
        server.stop()


class AuthCtl:
    """etcdctl against one etcd, as nobody or as root, with readers for users, roles and auth state."""

    def __init__(self, etcdctl: EtcdCtl, endpoint: str) -> None:
        self._etcdctl = etcdctl
        self.endpoint = endpoint
        self.root_password = ROOT_PW  # tests that give root another password set it here

    def __call__(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        creds = [f"--user={user}"] if user else []
        return self._etcdctl(*creds, *args, endpoint=self.endpoint)

    def auth_enabled(self) -> bool:
        """etcd refuses an anonymous request only while auth is on (etcdctl 3.4 has no `auth status`)."""
        try:
            self("user", "list")
        except subprocess.CalledProcessError as exc:
            assert "user name is empty" in exc.stderr, exc.stderr
            return True
        return False

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """As root while auth is on, else as nobody."""
        return self(*args, user=f"root:{self.root_password}" if self.auth_enabled() else None)

    def users(self) -> list[str]:
        return list(json.loads(self.admin("user", "list", "-w", "json").stdout).get("users") or [])

    def roles(self) -> list[str]:
        return list(json.loads(self.admin("role", "list", "-w", "json").stdout).get("roles") or [])

    def user_roles(self, name: str) -> list[str] | None:
        """The user's roles; None when etcd has no such user."""
        try:
            out = self.admin("user", "get", name, "-w", "json").stdout
        except subprocess.CalledProcessError as exc:
            assert "user name not found" in exc.stderr, exc.stderr
            return None
        return list(json.loads(out).get("roles") or [])

    def role_perms(self, role: str) -> list[tuple[str, str, str]] | None:
        """(key, range_end, read|write|readwrite) per permission; None when etcd has no such role."""
        try:
            out = self.admin("role", "get", role, "-w", "json").stdout
        except subprocess.CalledProcessError as exc:
            assert "role name not found" in exc.stderr, exc.stderr
            return None
        kinds = {0: "read", 1: "write", 2: "readwrite", "READ": "read", "WRITE": "write", "READWRITE": "readwrite"}
        return [
            (
                base64.b64decode(p.get("key", "")).decode(),
                base64.b64decode(p.get("range_end", "")).decode(),
                kinds[p.get("permType", 0)],
            )
            for p in json.loads(out).get("perm") or []
        ]

    def can_login(self, user: str, password: str) -> bool:
        try:
            self("user", "get", user, user=f"{user}:{password}")
        except subprocess.CalledProcessError as exc:
            assert "authentication failed" in exc.stderr, exc.stderr
            return False
        return True

    def add_user(self, name: str, password: str, *roles: str) -> None:
        self.admin("user", "add", f"{name}:{password}")
        for role in roles:
            self.admin("user", "grant-role", name, role)

    def enable_auth(self) -> None:
        """User root (password ROOT_PW, role root), then auth on, the way an operator does it."""
        self.add_user("root", ROOT_PW, "root")
        self.root_password = ROOT_PW
        self("auth", "enable")

    def reset(self) -> None:
        """Back to what every test finds: auth off, no users, no roles, no keys."""
        if self.auth_enabled():
            self("auth", "disable", user=f"root:{self.root_password}")
        self("del", "", "--from-key")
        for name in self.users():
            self("user", "delete", name)
        for role in self.roles():
            self("role", "delete", role)


@pytest.fixture
def ctl(access_etcd: EmbeddedEtcd, etcdctl: EtcdCtl) -> Iterator[AuthCtl]:
    control = AuthCtl(etcdctl, access_etcd.client_url)
    assert not control.auth_enabled() and control.users() == [] and control.roles() == []
    try:
        yield control
    finally:
        control.reset()


# servers ---------------------------------------------------------------------------------------------


def server(
    endpoint: str, user: str | None = None, password: str | None = None, **settings: str
) -> AbstractAsyncContextManager[Client]:
    """The server with the kv and access toolsets, connected as ``user`` (or without credentials).

    Without the registry's health-check hub: it would write its own keys, with whatever rights ``user`` has.
    """
    creds = {"username": user, "password": password or ""} if user else {}
    return served(endpoint, toolsets="kv,access", hub="false", **creds, **settings)


@asynccontextmanager
async def logged_server(
    endpoint: str, log: Path, user: str | None = None, password: str | None = None, **settings: str
) -> AsyncIterator[Client]:
    """As ``server``, as a ``kk-etcd-mcp serve`` process whose stderr (its whole log) is captured in ``log``."""
    creds = {"username": user, "password": password or ""} if user else {}
    env = server_env(endpoint, toolsets="kv,access", hub="false", **creds, **settings)
    params = StdioServerParameters(command=sys.executable, args=["-m", "kk_etcd_mcp", "serve"], env=env)
    with log.open("w") as errlog:
        async with Client(stdio_transport(params, errlog=errlog)) as client:
            yield client


async def tool_names(client: Client) -> set[str]:
    return {t.name for t in (await client.list_tools()).tools}


# tests -----------------------------------------------------------------------------------------------


async def test_access_tools_are_listed_with_annotations_and_a_sensitive_password(ctl: AuthCtl) -> None:
    async with server(ctl.endpoint) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert ACCESS_TOOLS.keys() <= tools.keys()
    for name, (read_only, destructive, idempotent) in ACCESS_TOOLS.items():
        tool = tools[name]
        assert tool.title and tool.description, name
        assert tool.annotations is not None, name
        hints = (tool.annotations.read_only_hint, tool.annotations.destructive_hint, tool.annotations.idempotent_hint)
        assert hints == (read_only, destructive, idempotent), name
        assert tool.output_schema is not None and tool.output_schema.get("properties"), name
    for name in ("user_add", "user_change_password"):
        out = tools[name].output_schema["properties"]["password"]  # type: ignore[index]
        assert out["sensitive"] is True and "SENSITIVE" in out["description"], name
        arg = tools[name].input_schema["properties"]["password"]
        assert arg["default"] is None and {"type": "string", "format": "password", "writeOnly": True} in arg["anyOf"]
    assert tools["user_add"].input_schema["properties"]["roles"]["default"] == []
    assert tools["role_grant_permission"].input_schema["properties"]["permission"]["enum"] == [
        "read",
        "write",
        "readwrite",
    ]

    async with server(ctl.endpoint, read_only="true") as client:
        offered = await tool_names(client)
    read_only = {name for name, (ro, _, _) in ACCESS_TOOLS.items() if ro}
    assert offered & ACCESS_TOOLS.keys() == read_only


async def test_roles_and_permissions(ctl: AuthCtl) -> None:
    async with server(ctl.endpoint) as client:
        added_role = await call(client, "role_add", name="reader")
        assert outcome(added_role) == {"name": "reader", "permissions": []}
        assert added_role["change"] == "create etcd role reader, without permissions" and added_role["removes"] == []
        assert ctl.role_perms("reader") == []
        text = await call_error(client, "role_add", name="reader")
        assert "role already exists: reader" in text

        role = await call(client, "role_grant_permission", role="reader", key="app/", prefix=True)
        assert role["permissions"] == [{"key": "app/", "range_end": "app0", "prefix": True, "permission": "read"}]
        await call(client, "role_grant_permission", role="reader", key="cfg/one", permission="readwrite")
        await call(client, "role_grant_permission", role="reader", key="a", range_end="c", permission="write")
        role = await call(client, "role_grant_permission", role="reader", key="", prefix=True)
        assert sorted(role["permissions"], key=lambda p: p["key"]) == [
            {"key": "", "range_end": "\0", "prefix": True, "permission": "read"},  # every key
            {"key": "a", "range_end": "c", "prefix": False, "permission": "write"},
            {"key": "app/", "range_end": "app0", "prefix": True, "permission": "read"},
            {"key": "cfg/one", "range_end": None, "prefix": False, "permission": "readwrite"},
        ]
        assert sorted(ctl.role_perms("reader") or []) == [
            ("", "\0", "read"),
            ("a", "c", "write"),
            ("app/", "app0", "read"),
            ("cfg/one", "", "readwrite"),
        ]
        assert await call(client, "role_get", name="reader") == outcome(role)
        # Granting on the same range again replaces the permission kind.
        await call(client, "role_grant_permission", role="reader", key="app/", prefix=True, permission="readwrite")
        assert ("app/", "app0", "readwrite") in (ctl.role_perms("reader") or [])

        await call(client, "role_add", name="writer")
        listed = await call(client, "role_list")
        assert [r["name"] for r in listed["roles"]] == ["reader", "writer"]
        assert listed["roles"][0] == await call(client, "role_get", name="reader")

        # Bad ranges are refused before etcd is asked.
        for args, expected in (
            ({"key": "app/", "prefix": True, "range_end": "b"}, "either prefix=true or a range_end"),
            ({"key": ""}, "the key must not be empty"),
            ({"key": "b", "range_end": "a"}, "must sort after the key"),
            ({"key": "b", "range_end": ""}, "range_end '' is ambiguous"),
        ):
            text = await call_error(client, "role_grant_permission", role="writer", **args)
            assert expected in text, text
        text = await call_error(client, "role_grant_permission", role="writer", key="x", permission="admin")
        assert "permission" in text
        assert ctl.role_perms("writer") == []

        # A revoke names the range exactly as granted.
        text = await call_error(client, "role_revoke_permission", role="reader", key="app/")
        assert "role reader has no permission on exactly key app/" in text
        role = await call(client, "role_revoke_permission", role="reader", key="app/", prefix=True)
        assert [p["key"] for p in role["permissions"]] == ["", "a", "cfg/one"]
        await call(client, "role_revoke_permission", role="reader", key="a", range_end="c")
        await call(client, "role_revoke_permission", role="reader", key="cfg/one")
        role = await call(client, "role_revoke_permission", role="reader", key="", prefix=True)
        assert role["permissions"] == [] and ctl.role_perms("reader") == []

        # Unknown roles, by every tool that takes one.
        for tool, args in (
            ("role_get", {"name": "nope"}),
            ("role_delete", {"name": "nope"}),
            ("role_grant_permission", {"role": "nope", "key": "k"}),
            ("role_revoke_permission", {"role": "nope", "key": "k"}),
        ):
            text = await call_error(client, tool, **args)
            assert "role not found: nope" in text, (tool, text)

        # Role root is built in: readable though never added, and never deleted.
        root = await call(client, "role_get", name="root")
        assert root["permissions"] == [{"key": "", "range_end": "\0", "prefix": True, "permission": "readwrite"}]
        text = await call_error(client, "role_delete", name="root")
        assert "refusing to delete role root" in text and "Nothing was changed" in text
        ctl("role", "add", "root")
        assert "refusing to delete role root" in await call_error(client, "role_delete", name="root")
        assert ctl.role_perms("root") is not None

        deleted = await call(client, "role_delete", name="writer")
        assert deleted.items() >= {"name": "writer", "deleted": True}.items()
        assert sorted(ctl.roles()) == ["reader", "root"]
        assert "role not found: writer" in await call_error(client, "role_delete", name="writer")
        assert "role name must not be empty" in await call_error(client, "role_add", name="")
        # etcd 3.5 itself exits on a name over 32 KiB ("key too large"): refused before it gets there
        assert "at most 256 are allowed" in await call_error(client, "role_add", name="r" * 40_000)
        assert "at most 256 are allowed" in await call_error(client, "user_add", name="u" * 40_000)
        assert sorted(ctl.roles()) == ["reader", "root"]  # and etcd still answers


async def test_users(ctl: AuthCtl) -> None:
    ctl("role", "add", "reader")
    ctl("role", "add", "writer")
    async with server(ctl.endpoint) as client:
        added = await call(client, "user_add", name="alice", password="alice-pw-1", roles=["writer", "reader"])
        assert outcome(added) == {
            "name": "alice",
            "roles": ["reader", "writer"],
            "password_generated": False,
            "password": None,
        }
        assert ctl.user_roles("alice") == ["reader", "writer"]  # kk_etcd_go dropped the roles; we grant them

        # An existing user is an error, and changes nothing.
        text = await call_error(client, "user_add", name="alice", password="other-pw", roles=["root"])
        assert "user already exists: alice" in text
        assert ctl.user_roles("alice") == ["reader", "writer"]

        # An unknown role stops user_add before the user exists.
        text = await call_error(client, "user_add", name="bob", roles=["reader", "nope"])
        assert "role not found: nope" in text
        assert "bob" not in ctl.users()

        generated = await call(client, "user_add", name="bob")
        assert generated["password_generated"] is True and len(generated["password"]) >= 32
        assert generated["roles"] == []

        assert await call(client, "user_get", name="alice") == {"name": "alice", "roles": ["reader", "writer"]}
        assert await call(client, "user_list") == {
            "users": [{"name": "alice", "roles": ["reader", "writer"]}, {"name": "bob", "roles": []}]
        }

        granted = await call(client, "user_grant_role", name="bob", role="reader")
        assert outcome(granted) == {"name": "bob", "roles": ["reader"]} and granted["changed"] is True
        again = await call(client, "user_grant_role", name="bob", role="reader")
        assert outcome(again) == {"name": "bob", "roles": ["reader"]} and again["changed"] is False
        assert ctl.user_roles("bob") == ["reader"]
        revoked = await call(client, "user_revoke_role", name="alice", role="writer")
        assert revoked.items() >= {"name": "alice", "roles": ["reader"]}.items()
        assert ctl.user_roles("alice") == ["reader"]
        text = await call_error(client, "user_revoke_role", name="alice", role="writer")
        assert "user alice does not hold role writer" in text

        # Unknown users and roles, by every tool that takes them.
        for tool, args, expected in (
            ("user_get", {"name": "nobody"}, "user not found: nobody"),
            ("user_delete", {"name": "nobody"}, "user not found: nobody"),
            ("user_change_password", {"name": "nobody"}, "user not found: nobody"),
            ("user_grant_role", {"name": "nobody", "role": "reader"}, "user not found: nobody"),
            ("user_revoke_role", {"name": "nobody", "role": "reader"}, "user not found: nobody"),
            ("user_grant_role", {"name": "bob", "role": "nope"}, "role not found: nope"),
        ):
            text = await call_error(client, tool, **args)
            assert expected in text, (tool, text)
        assert "user name must not be empty" in await call_error(client, "user_add", name="")

        # Root: never deleted, never loses role root (auth is off here: etcd itself would allow both).
        await call(client, "user_add", name="root", roles=["root"])
        text = await call_error(client, "user_delete", name="root")
        assert "refusing to delete user root" in text and "Nothing was changed" in text
        text = await call_error(client, "user_revoke_role", name="root", role="root")
        assert "refusing to revoke role root from user root" in text
        assert ctl.user_roles("root") == ["root"]

        deleted = await call(client, "user_delete", name="bob")
        assert deleted.items() >= {"name": "bob", "deleted": True}.items()
        assert sorted(ctl.users()) == ["alice", "root"]


async def test_auth_enable_refusals_change_nothing(ctl: AuthCtl) -> None:
    # Without credentials the server would lock itself out.
    async with server(ctl.endpoint) as client:
        text = await call_error(client, "auth_enable")
        assert "refusing to enable authentication" in text and "KK_ETCD_USERNAME" in text
        status = await call(client, "auth_status")
        assert status["enabled"] is False and status["connected_as"] is None
    # No user root: etcd's own rule, with the way to fix it.
    ctl.add_user("alice", "alice-pw", "root")
    async with server(ctl.endpoint, "alice", "alice-pw") as client:
        text = await call_error(client, "auth_enable")
        assert "etcd has no user root" in text and "user_add(name='root', roles=['root'])" in text
    # User root without role root.
    ctl.add_user("root", ROOT_PW)
    async with server(ctl.endpoint, "alice", "alice-pw") as client:
        text = await call_error(client, "auth_enable")
        assert "user root does not hold role root" in text and "user_grant_role(name='root', role='root')" in text
    # The server's own user must exist.
    ctl("user", "grant-role", "root", "root")
    async with server(ctl.endpoint, "ghost", "ghost-pw") as client:
        text = await call_error(client, "auth_enable")
        assert "connects as ghost, but etcd has no such user" in text
    assert not ctl.auth_enabled()


async def test_auth_enable_and_disable_round_trip(ctl: AuthCtl) -> None:
    # Root is made through the tools, with a generated password: proof that the password works.
    async with server(ctl.endpoint) as client:
        root = await call(client, "user_add", name="root")
    root_pw = root["password"]
    ctl.root_password = root_pw
    async with server(ctl.endpoint, "root", root_pw) as client:
        await call(client, "kv_put", key="app/x", value="before")  # authenticated lazily while auth is off
        text = await call_error(client, "auth_enable")
        assert "user root does not hold role root" in text
        await call(client, "user_grant_role", name="root", role="root")

        enabled = await call(client, "auth_enable")
        assert enabled.items() >= {"enabled": True, "changed": True, "connected_as": "root", "note": None}.items()
        assert ctl.auth_enabled()
        assert ctl.can_login("root", root_pw)
        # The server keeps working with its configured credentials.
        await call(client, "kv_put", key="app/x", value="after")
        assert (await call(client, "kv_get", key="app/x"))["value"] == "after"
        status = await call(client, "auth_status")
        assert status["enabled"] is True and status["connected_as"] == "root"
        assert status["users"] == 1 and status["roles"] == 0
        if is_34():  # no AuthStatus call: no revision, and the note says the state was inferred
            assert status["auth_revision"] is None and "inferred" in status["note"]
        else:
            assert status["auth_revision"] > 0 and status["note"] is None
        again = await call(client, "auth_enable")
        assert again["enabled"] is True and again["changed"] is False

        # Guardrails hold while auth is on, and say so before etcd would.
        assert "refusing to delete user root" in await call_error(client, "user_delete", name="root")
        assert "refusing to delete role root" in await call_error(client, "role_delete", name="root")
        text = await call_error(client, "user_revoke_role", name="root", role="root")
        assert "refusing to revoke role root from user root" in text
        assert "refusing to change the password of user root" in await call_error(
            client, "user_change_password", name="root"
        )
        assert ctl.user_roles("root") == ["root"] and ctl.can_login("root", root_pw)

        disabled = await call(client, "auth_disable")
        assert disabled.items() >= {"enabled": False, "changed": True, "connected_as": "root", "note": None}.items()
        assert not ctl.auth_enabled()
        assert (await call(client, "kv_get", key="app/x"))["value"] == "after"  # its old token is void now
        again = await call(client, "auth_disable")
        assert again["enabled"] is False and again["changed"] is False
        assert (await call(client, "auth_status"))["enabled"] is False


async def test_auth_enable_with_a_wrong_server_password_says_the_server_is_locked_out(ctl: AuthCtl) -> None:
    """While auth is off etcd cannot check a password, so a wrong one only shows once auth is on."""
    ctl.add_user("root", ROOT_PW, "root")
    ctl.add_user("alice", "alice-pw", "root")
    async with server(ctl.endpoint, "alice", "not-alices-pw") as client:
        assert (await call(client, "auth_status"))["enabled"] is False  # works: etcd ignores credentials now
        text = await call_error(client, "auth_enable")
        assert "authentication is now enabled in etcd, but etcd rejects this server's password for user alice" in text
        assert "etcdctl --user root auth disable" in text and "not-alices-pw" not in text
    assert ctl.auth_enabled()  # the fixture turns it off again, as root


async def test_the_connected_user_is_protected(ctl: AuthCtl) -> None:
    ctl("role", "add", "reader")
    ctl.add_user("alice", "alice-pw", "root")
    ctl.add_user("bob", "bob-pw", "reader")
    ctl.add_user("carol", "carol-pw")
    ctl.enable_auth()
    async with server(ctl.endpoint, "alice", "alice-pw") as client:  # an administrator other than root
        text = await call_error(client, "user_delete", name="alice")
        assert "refusing to delete user alice: this server connects to etcd as alice" in text
        text = await call_error(client, "user_change_password", name="alice", password="new-alice-pw")
        assert "refusing to change the password of user alice" in text and "KK_ETCD_PASSWORD" in text
        assert ctl.user_roles("alice") == ["root"] and ctl.can_login("alice", "alice-pw")
        # Another user may go.
        await call(client, "user_delete", name="carol")
        assert "carol" not in ctl.users()
        status = await call(client, "auth_status")
        assert status["enabled"] is True and status["connected_as"] == "alice" and status["users"] == 3

    # A server whose user does not hold role root may enable auth, and is told what it gives up.
    ctl("auth", "disable", user=f"root:{ROOT_PW}")
    async with server(ctl.endpoint, "bob", "bob-pw") as client:
        enabled = await call(client, "auth_enable")
        assert enabled["enabled"] is True and enabled["changed"] is True
        assert "bob, who does not hold role root" in enabled["note"]
        text = await call_error(client, "auth_disable")
        assert "permission denied: bob may not disable authentication in etcd" in text and "role root" in text
    assert ctl.auth_enabled()


async def test_user_change_password(ctl: AuthCtl) -> None:
    ctl.add_user("carol", "carol-old-pw")
    ctl.enable_auth()
    async with server(ctl.endpoint, "root", ROOT_PW) as client:
        changed = await call(client, "user_change_password", name="carol")
        assert changed["name"] == "carol" and changed["password_generated"] is True
        new_pw = changed["password"]
        assert len(new_pw) >= 32
        assert ctl.can_login("carol", new_pw) and not ctl.can_login("carol", "carol-old-pw")

        given = await call(client, "user_change_password", name="carol", password="carol-chosen-pw")
        assert outcome(given) == {"name": "carol", "password_generated": False, "password": None}
        assert ctl.can_login("carol", "carol-chosen-pw") and not ctl.can_login("carol", new_pw)

        for bad, expected in (("", "must not be empty"), ("   ", "must not be empty"), ("x" * 73, "73 bytes long")):
            text = await call_error(client, "user_change_password", name="carol", password=bad)
            assert expected in text
        assert ctl.can_login("carol", "carol-chosen-pw")
        assert "user not found: nobody" in await call_error(client, "user_change_password", name="nobody")


async def test_least_privilege_read_only_role(ctl: AuthCtl) -> None:
    ctl("role", "add", "app-reader")
    ctl("role", "grant-permission", "app-reader", "read", "app/", "--prefix=true")
    ctl.add_user("ro", "ro-pw", "app-reader")
    ctl.enable_auth()
    ctl("put", "app/db", "original", user=f"root:{ROOT_PW}")
    ctl("put", "other/x", "hidden", user=f"root:{ROOT_PW}")
    revision = json.loads(ctl("get", "app/db", "-w", "json", user=f"root:{ROOT_PW}").stdout)["header"]["revision"]

    async with server(ctl.endpoint, "ro", "ro-pw") as client:
        assert (await call(client, "kv_get", key="app/db"))["value"] == "original"
        assert [i["key"] for i in (await call(client, "kv_list", prefix="app/"))["items"]] == ["app/db"]
        text = await call_error(client, "kv_put", key="app/db", value="changed")
        assert "permission denied: ro may not write app/db" in text
        text = await call_error(client, "kv_delete", key="app/db")
        assert "permission denied: ro may not delete app/db" in text
        text = await call_error(client, "kv_get", key="other/x")
        assert "permission denied: ro may not read other/x" in text
        # The access tools need role root; status still answers, with what ro may see.
        text = await call_error(client, "user_list")
        assert "permission denied: ro may not list etcd users" in text and "needs role root" in text
        # (its plan reads first: whether eve exists)
        assert "permission denied: ro may not read user eve" in await call_error(client, "user_add", name="eve")
        status = await call(client, "auth_status")
        assert status["enabled"] is True and status["connected_as"] == "ro"
        assert status["users"] is None and status["roles"] is None and status["auth_revision"] is None
        assert "ro may not list users and roles" in status["note"]

    after = json.loads(ctl("get", "app/db", "-w", "json", user=f"root:{ROOT_PW}").stdout)
    assert base64.b64decode(after["kvs"][0]["value"]) == b"original"
    assert after["header"]["revision"] == revision  # nothing at all was written
    assert ctl.users() == ["ro", "root"]

    # With read_only the server does not even offer the write tools; etcd would refuse them anyway.
    async with server(ctl.endpoint, "ro", "ro-pw", read_only="true") as client:
        offered = await tool_names(client)
        assert {"kv_get", "kv_list", "auth_status", "user_get"} <= offered
        assert not offered & {"kv_put", "kv_delete", "kv_import", "kv_rollback", "user_add", "auth_disable"}
        assert (await call(client, "kv_get", key="app/db"))["value"] == "original"


async def test_without_credentials_against_auth_on(ctl: AuthCtl) -> None:
    ctl.enable_auth()
    async with server(ctl.endpoint) as client:
        status = await call(client, "auth_status")
        assert status["enabled"] is True and status["connected_as"] is None and status["users"] is None
        assert "KK_ETCD_USERNAME" in status["note"]
        text = await call_error(client, "kv_get", key="app/x")
        assert "no credentials are configured" in text


async def test_wrong_password_at_start_answers_clearly_and_stays_up(ctl: AuthCtl, tmp_path: Path) -> None:
    ctl.enable_auth()
    wrong = "wrong-pw-6d1c"
    log = tmp_path / "server.log"
    async with logged_server(ctl.endpoint, log, "root", wrong) as client:
        assert "auth_status" in await tool_names(client)
        texts = [
            await call_error(client, tool, **args)
            for tool, args in (("kv_get", {"key": "app/x"}), ("auth_status", {}), ("user_list", {}))
        ]
        assert "kv_get" in await tool_names(client)  # still serving after the failures: no crash, no restart loop
        texts.append(await call_error(client, "kv_get", key="app/x"))
    for text in texts:
        assert "authentication failed for etcd user root" in text and "KK_ETCD_PASSWORD" in text, text
        assert wrong not in text
    logged = log.read_text()
    assert "Traceback" not in logged
    assert wrong not in logged
    assert ctl.auth_enabled()


async def test_token_expiry_is_survived(tmp_path: Path, etcdctl: EtcdCtl) -> None:
    etcd = _start_etcd(tmp_path, "--auth-token-ttl=1")
    try:
        short = AuthCtl(etcdctl, etcd.client_url)
        short.enable_auth()
        log = tmp_path / "server.log"
        async with logged_server(etcd.client_url, log, "root", ROOT_PW) as client:
            assert (await call(client, "user_list"))["users"] == [{"name": "root", "roles": ["root"]}]
            await anyio.sleep(3)  # the simple token expires after 1 idle second
            assert (await call(client, "role_add", name="after-expiry"))["name"] == "after-expiry"
            await anyio.sleep(3)
            assert (await call(client, "auth_status"))["roles"] == 1
        # etcd 3.4 has no AuthStatus: auth_status logs in afresh (EtcdAuth._probe_enabled) instead of
        # finding its token expired.
        expiries = 1 if is_34() else 2
        assert log.read_text().count("etcd token expired or missing; authenticating again") == expiries
        short.reset()
        assert not short.auth_enabled()
    finally:
        etcd.stop()


async def test_passwords_never_appear_in_logs_errors_or_other_results(ctl: AuthCtl, tmp_path: Path) -> None:
    ctl("role", "add", "reader")
    log = tmp_path / "server.log"
    results: list[str] = []  # every result and error text the client saw
    async with logged_server(ctl.endpoint, log, log_level="DEBUG") as client:

        async def ok(tool: str, **args: Any) -> dict[str, Any]:
            result = await call(client, tool, **args)
            results.append(json.dumps(result))
            return result

        async def fails(tool: str, **args: Any) -> None:
            results.append(await call_error(client, tool, **args))

        assert (await ok("user_add", name="alice", password="given-pw-a8c2", roles=["reader"]))["password"] is None
        assert (await ok("user_change_password", name="alice", password="given-pw-77e0"))["password"] is None
        # Strings that look like JSON are passwords like any other (MCPServer would decode them otherwise).
        assert (await ok("user_add", name="json-null", password="null"))["password"] is None
        assert (await ok("user_add", name="json-list", password='["pw-in-a-list-4e1a"]'))["password"] is None
        generated = (await ok("user_add", name="bob"))["password"]
        regenerated = (await ok("user_change_password", name="bob"))["password"]

        await fails("user_add", name="alice", password="dup-pw-91f3")
        await fails("user_add", name="carol", password="role-pw-0b4e", roles=["nope"])
        await fails("user_change_password", name="nobody", password="ghost-pw-5a7d")
        await fails("user_add", name="carol", password="long-pw-" + "y" * 72)
        await fails("user_add", name="carol", password=31415926535)  # not a string: refused without quoting it
        await fails("user_change_password", name="bob", password=["list-pw-c3d9"])

        for tool, args in (("user_get", {"name": "alice"}), ("user_list", {}), ("role_list", {}), ("auth_status", {})):
            await ok(tool, **args)
    assert ctl.users() == ["alice", "bob", "json-list", "json-null"]

    never_shown = [
        "given-pw-a8c2",
        "given-pw-77e0",
        "pw-in-a-list-4e1a",
        "dup-pw-91f3",
        "role-pw-0b4e",
        "ghost-pw-5a7d",
        "long-pw-" + "y" * 72,
        "31415926535",
        "list-pw-c3d9",
    ]
    logged = log.read_text()
    assert "Tool 'user_add' failed" in logged  # failures are logged (at DEBUG level, even), passwords are not
    for secret in [*never_shown, generated, regenerated]:
        assert secret not in logged, secret
    for secret in never_shown:
        assert not [r for r in results if secret in r], secret
    # A generated password is in the one result that generated it, and nowhere else.
    assert [generated in r for r in results].count(True) == 1
    assert [regenerated in r for r in results].count(True) == 1

    ctl.enable_auth()
    assert ctl.can_login("alice", "given-pw-77e0") and ctl.can_login("bob", regenerated)
    assert ctl.can_login("json-null", "null") and ctl.can_login("json-list", '["pw-in-a-list-4e1a"]')


async def test_auth_status_where_etcd_lacks_the_auth_status_rpc(ctl: AuthCtl) -> None:
    """etcd 3.4 has no AuthStatus RPC: auth_status infers the state (see etcd34_proxy)."""
    address = ctl.endpoint.removeprefix("http://")
    async with etcd34_proxy(address) as url:
        async with server(url) as client:
            status = await call(client, "auth_status")
            assert status["enabled"] is False and status["auth_revision"] is None
            assert "inferred" in status["note"] and status["users"] == 0

        ctl.enable_auth()
        async with server(url, "root", ROOT_PW) as client:
            status = await call(client, "auth_status")
            assert status["enabled"] is True and status["auth_revision"] is None and status["users"] == 1
            assert "inferred" in status["note"]
            # auth_enable/auth_disable decide on the same inference.
            assert (await call(client, "auth_enable"))["changed"] is False
            assert (await call(client, "auth_disable"))["changed"] is True
            assert not ctl.auth_enabled()
            status = await call(client, "auth_status")
            assert status["enabled"] is False


async def test_auth_enable_where_etcd_lacks_the_auth_status_rpc_still_proves_the_server_gets_in(ctl: AuthCtl) -> None:
    """The lock-out proof logs in as the server's own user, which works on etcd 3.4 too (no AuthStatus)."""
    ctl.add_user("root", ROOT_PW, "root")
    ctl.add_user("alice", "alice-pw", "root")
    address = ctl.endpoint.removeprefix("http://")
    async with etcd34_proxy(address) as url:
        async with server(url, "alice", "not-alices-pw") as client:
            text = await call_error(client, "auth_enable")
            assert "etcd rejects this server's password for user alice, so the server is locked out" in text
        assert ctl.auth_enabled()
        ctl("auth", "disable", user=f"root:{ROOT_PW}")

        async with server(url, "alice", "alice-pw") as client:
            enabled = await call(client, "auth_enable")
            assert enabled["enabled"] is True and enabled["changed"] is True
            assert (await call(client, "user_get", name="alice"))["roles"] == ["root"]  # still gets in
        assert ctl.auth_enabled()
