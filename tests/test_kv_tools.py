"""The kv toolset end to end: the server in process (as ``serve`` builds it), the mcp client, a real etcd.

etcdctl (or, for raw bytes, the adapter) sets up state and confirms what was, or was not, written,
independently of the code under test. Each test runs one server session and groups related checks.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import yaml
from conftest import EtcdCtl, keys_under
from mcp import Client
from mcp_helpers import call, call_error, served

from kk_etcd_mcp.etcd import EtcdClient

pytestmark = pytest.mark.anyio


KV_TOOLS = {
    # name: (read_only, destructive, idempotent)
    "kv_get": (True, None, None),
    "kv_list": (True, None, None),
    "kv_history": (True, None, None),
    "kv_export": (True, None, None),
    "kv_put": (False, True, None),  # a lease over an existing key removes it
    "kv_rollback": (False, False, None),
    "kv_delete": (False, True, True),
    "kv_import": (False, True, None),
}


# etcdctl helpers -------------------------------------------------------------------------------------


def stored(etcdctl: EtcdCtl, key: str) -> dict[str, Any] | None:
    """The key as etcd has it (value as bytes), read with etcdctl; None when absent."""
    out = json.loads(etcdctl("get", key, "-w", "json").stdout)
    kvs = out.get("kvs") or []
    if not kvs:
        return None
    kv = kvs[0]
    return {
        "value": base64.b64decode(kv.get("value", "")),
        "create_revision": kv["create_revision"],
        "mod_revision": kv["mod_revision"],
        "version": kv["version"],
        "lease": kv.get("lease", 0),
    }


def value_of(etcdctl: EtcdCtl, key: str) -> bytes | None:
    kv = stored(etcdctl, key)
    return None if kv is None else kv["value"]


def put(etcdctl: EtcdCtl, key: str, value: str) -> int:
    """Write with etcdctl; returns the key's new mod_revision."""
    etcdctl("put", key, "--", value)  # "--": a value may start with "-"
    kv = stored(etcdctl, key)
    assert kv is not None
    return int(kv["mod_revision"])


def store_revision(etcdctl: EtcdCtl) -> int:
    out = json.loads(etcdctl("get", "kk-test-nonexistent-key", "-w", "json").stdout)
    return int(out["header"]["revision"])


def lease_ids(etcdctl: EtcdCtl) -> set[int]:
    out = etcdctl("lease", "list").stdout
    return {int(m, 16) for m in re.findall(r"^([0-9a-f]+)$", out, flags=re.M)}


def server(etcd_endpoint: str, key_prefix: str) -> AbstractAsyncContextManager[Client]:
    """A server limited to this test's keys, with the registry prefix moved under them."""
    # No hub: its leader key and alive document would land under the registry prefix and move revisions.
    return served(etcd_endpoint, allowed_prefixes=key_prefix, registry_prefix=key_prefix + "reg/", hub="false")


# tests -----------------------------------------------------------------------------------------------


async def test_kv_tools_are_listed_with_titles_annotations_and_output_schema(
    etcd_endpoint: str, key_prefix: str
) -> None:
    async with server(etcd_endpoint, key_prefix) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert KV_TOOLS.keys() <= tools.keys()
    for name, (read_only, destructive, idempotent) in KV_TOOLS.items():
        tool = tools[name]
        assert tool.title, name
        assert tool.annotations is not None, name
        assert tool.annotations.read_only_hint is read_only, name
        if destructive is not None:
            assert tool.annotations.destructive_hint is destructive, name
        if idempotent is not None:
            assert tool.annotations.idempotent_hint is idempotent, name
        assert tool.output_schema is not None, name
        assert tool.output_schema.get("properties"), name


async def test_kv_get(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    p = key_prefix
    put(etcdctl, p + "text", "plain value")
    put(etcdctl, p + "json", '{"host": "db", "port": 5432, "tags": ["a", "b"]}')
    put(etcdctl, p + "yaml", "host: db\nport: 5432\nlist:\n  - 1\n  - 2\n")
    put(etcdctl, p + "jsonlist", "[1, 2, 3]")
    first = put(etcdctl, p + "versioned", "v1")
    second = put(etcdctl, p + "versioned", "v2")
    before_binary = store_revision(etcdctl)
    async with EtcdClient([etcd_endpoint]) as etcd:
        await etcd.put((p + "binary").encode(), b"\xff\xfe\x00raw")
    lease_hex = re.search(r"lease ([0-9a-f]+) granted", etcdctl("lease", "grant", "120").stdout)
    assert lease_hex is not None
    lease_id = int(lease_hex.group(1), 16)
    etcdctl("put", p + "leased", "temp", f"--lease={lease_hex.group(1)}")

    async with server(etcd_endpoint, key_prefix) as client:
        text = await call(client, "kv_get", key=p + "text")
        kv = stored(etcdctl, p + "text")
        assert kv is not None
        assert text["key"] == p + "text"
        assert text["value"] == "plain value"
        assert text["format"] == "text"
        assert text["encoding"] == "utf-8"
        assert text.get("data") is None
        assert (text["create_revision"], text["mod_revision"], text["version"], text["lease"]) == (
            kv["create_revision"],
            kv["mod_revision"],
            1,
            0,
        )

        js = await call(client, "kv_get", key=p + "json")
        assert js["format"] == "json"
        assert js["data"] == {"host": "db", "port": 5432, "tags": ["a", "b"]}
        assert js["value"] == '{"host": "db", "port": 5432, "tags": ["a", "b"]}'

        jl = await call(client, "kv_get", key=p + "jsonlist")
        assert (jl["format"], jl["data"]) == ("json", [1, 2, 3])

        ym = await call(client, "kv_get", key=p + "yaml")
        assert ym["format"] == "yaml"
        assert ym["data"] == {"host": "db", "port": 5432, "list": [1, 2]}

        latest = await call(client, "kv_get", key=p + "versioned")
        assert (latest["value"], latest["mod_revision"], latest["version"]) == ("v2", second, 2)
        old = await call(client, "kv_get", key=p + "versioned", revision=first)
        assert (old["value"], old["mod_revision"], old["version"]) == ("v1", first, 1)

        binary = await call(client, "kv_get", key=p + "binary")
        assert binary["encoding"] == "base64"
        assert base64.b64decode(binary["value"]) == b"\xff\xfe\x00raw"
        assert binary["format"] == "text"

        leased = await call(client, "kv_get", key=p + "leased")
        assert leased["lease"] == lease_id
        assert leased["value"] == "temp"

        missing = await call_error(client, "kv_get", key=p + "missing")
        assert f"key not found: {p}missing" in missing
        # The binary key did not exist yet at before_binary.
        gone = await call_error(client, "kv_get", key=p + "binary", revision=before_binary)
        assert f"key not found: {p}binary" in gone
        assert str(before_binary) in gone

        negative = await call_error(client, "kv_get", key=p + "text", revision=-1)
        assert "revision" in negative
        empty = await call_error(client, "kv_get", key="")
        assert "empty" in empty


async def test_kv_put(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    p = key_prefix
    async with server(etcd_endpoint, key_prefix) as client:
        # create, then overwrite
        created = await call(client, "kv_put", key=p + "a", value="one")
        kv = stored(etcdctl, p + "a")
        assert kv is not None and kv["value"] == b"one"
        assert created == {
            "key": p + "a",
            "revision": kv["mod_revision"],
            "created": True,
            "previous_mod_revision": None,
            "lease": 0,
            "dry_run": False,
            "change": f"create key {p}a",
            "removes": [],
        }
        updated = await call(client, "kv_put", key=p + "a", value="two")
        kv2 = stored(etcdctl, p + "a")
        assert kv2 is not None and kv2["value"] == b"two" and kv2["version"] == 2
        assert updated["created"] is False
        assert updated["previous_mod_revision"] == created["revision"]
        assert updated["revision"] == kv2["mod_revision"] > created["revision"]

        # a string is stored byte for byte, also when it happens to be JSON
        for name, text in (("true", "true"), ("null", "null"), ("num", "0012"), ("jtext", '{"k":  [1,2]}')):
            await call(client, "kv_put", key=p + name, value=text)
            assert value_of(etcdctl, p + name) == text.encode()

        # json and yaml strings are validated and stored as given
        raw_json = '{"a": [1, 2], "b": null}'
        await call(client, "kv_put", key=p + "j", value=raw_json, format="json")
        assert value_of(etcdctl, p + "j") == raw_json.encode()
        raw_yaml = "a: 1\nb:\n  - x\n"
        await call(client, "kv_put", key=p + "y", value=raw_yaml, format="yaml")
        assert value_of(etcdctl, p + "y") == raw_yaml.encode()

        bad_json = await call_error(client, "kv_put", key=p + "badj", value='{"a": 1,\n "b": }', format="json")
        assert "line 2, column 7" in bad_json
        assert "json" in bad_json
        bad_yaml = await call_error(
            client, "kv_put", key=p + "bady", value="key: value\n  bad: indent\n", format="yaml"
        )
        assert "line 2, column 6" in bad_yaml
        assert "yaml" in bad_yaml
        # invalid value over an existing key: the old value stays
        over = await call_error(client, "kv_put", key=p + "j", value="{not json", format="json")
        assert "line 1, column 2" in over
        assert value_of(etcdctl, p + "j") == raw_json.encode()

        # objects and lists are serialised in the requested format
        obj = {"name": "svc", "ports": [80, 443], "nested": {"on": True}}
        await call(client, "kv_put", key=p + "objj", value=obj, format="json")
        assert json.loads(value_of(etcdctl, p + "objj") or b"") == obj
        await call(client, "kv_put", key=p + "objy", value=obj, format="yaml")
        assert yaml.safe_load(value_of(etcdctl, p + "objy") or b"") == obj
        await call(client, "kv_put", key=p + "list", value=["x", 1, None], format="json")
        assert json.loads(value_of(etcdctl, p + "list") or b"") == ["x", 1, None]
        back = await call(client, "kv_get", key=p + "objy")
        assert (back["format"], back["data"]) == ("yaml", obj)
        text_obj = await call_error(client, "kv_put", key=p + "objt", value=obj, format="text")
        assert "format" in text_obj

        # compare-and-swap on mod_revision
        current = kv2["mod_revision"]
        cas = await call(client, "kv_put", key=p + "a", value="three", expected_revision=current)
        assert cas["previous_mod_revision"] == current
        assert value_of(etcdctl, p + "a") == b"three"
        stale = await call_error(client, "kv_put", key=p + "a", value="four", expected_revision=current)
        assert f"revision conflict on {p}a: expected {current}, found {cas['revision']}" in stale
        assert value_of(etcdctl, p + "a") == b"three"

        # expected_revision=0: only if absent
        fresh = await call(client, "kv_put", key=p + "new", value="n1", expected_revision=0)
        assert fresh["created"] is True
        assert value_of(etcdctl, p + "new") == b"n1"
        taken = await call_error(client, "kv_put", key=p + "new", value="n2", expected_revision=0)
        assert f"revision conflict on {p}new: expected 0, found {fresh['revision']}" in taken
        assert value_of(etcdctl, p + "new") == b"n1"
        # expecting a revision of a key that does not exist
        absent = await call_error(client, "kv_put", key=p + "absent", value="x", expected_revision=fresh["revision"])
        assert f"revision conflict on {p}absent: expected {fresh['revision']}, found 0" in absent
        assert value_of(etcdctl, p + "absent") is None

        # lease_ttl attaches a fresh lease
        leases_before = lease_ids(etcdctl)
        leased = await call(client, "kv_put", key=p + "leased", value="tmp", lease_ttl=60)
        kvl = stored(etcdctl, p + "leased")
        assert kvl is not None and kvl["lease"] != 0
        assert leased["lease"] == kvl["lease"]
        assert leased["lease"] not in leases_before
        ttl = etcdctl("lease", "timetolive", format(leased["lease"], "x")).stdout
        granted = re.search(r"granted with TTL\((\d+)s\)", ttl)
        assert granted is not None and int(granted.group(1)) == 60

        # a conflicting put with lease_ttl writes nothing and leaves no lease behind
        leases_before = lease_ids(etcdctl)
        await call_error(client, "kv_put", key=p + "new", value="n3", expected_revision=0, lease_ttl=60)
        assert lease_ids(etcdctl) <= leases_before
        assert value_of(etcdctl, p + "new") == b"n1"

        # bad arguments: clear errors, nothing written
        neg = await call_error(client, "kv_put", key=p + "neg", value="x", expected_revision=-1)
        assert "expected_revision" in neg
        for ttl_value in (0, -5):
            bad_ttl = await call_error(client, "kv_put", key=p + "neg", value="x", lease_ttl=ttl_value)
            assert "lease_ttl" in bad_ttl
        assert value_of(etcdctl, p + "neg") is None
        for name in ("badj", "bady", "objt"):
            assert value_of(etcdctl, p + name) is None


async def test_kv_list_paging_keys_only_and_internal_keys(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    p = key_prefix
    paged = [f"{p}page/k{i}" for i in range(7)]
    for i, key in enumerate(paged):
        put(etcdctl, key, f"value-{i}")
    put(etcdctl, p + "pagex", "sibling outside page/")
    # around the (hidden) registry prefix p + "reg/"
    put(etcdctl, p + "r1", "before")
    put(etcdctl, p + "r2", "before")
    put(etcdctl, p + "reg/svc/1", "registry")
    put(etcdctl, p + "reh", "after")
    put(etcdctl, p + "rz", "after")

    async with server(etcd_endpoint, key_prefix) as client:
        pages: list[list[str]] = []
        cursor: str | None = None
        for _ in range(5):
            args: dict[str, Any] = {"prefix": p + "page/", "limit": 3}
            if cursor is not None:
                args["cursor"] = cursor
            page = await call(client, "kv_list", **args)
            pages.append([item["key"] for item in page["items"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert isinstance(cursor, str) and cursor
        assert [len(pg) for pg in pages] == [3, 3, 1]
        assert [k for pg in pages for k in pg] == paged  # key order, no duplicates, no sibling

        full = await call(client, "kv_list", prefix=p + "page/")
        assert full["next_cursor"] is None
        assert [(i["key"], i["value"], i["encoding"], i["version"]) for i in full["items"]] == [
            (k, f"value-{n}", "utf-8", 1) for n, k in enumerate(paged)
        ]
        kv0 = stored(etcdctl, paged[0])
        assert kv0 is not None and full["items"][0]["mod_revision"] == kv0["mod_revision"]
        assert full["revision"] >= kv0["mod_revision"]

        keys_only = await call(client, "kv_list", prefix=p + "page/", keys_only=True)
        assert [i["key"] for i in keys_only["items"]] == paged
        assert all(i.get("value") is None and i.get("encoding") is None for i in keys_only["items"])

        # the registry prefix is hidden unless include_internal, also when paging across it
        r_keys = [p + "r1", p + "r2", p + "reh", p + "rz"]
        visible = await call(client, "kv_list", prefix=p + "r")
        assert [i["key"] for i in visible["items"]] == r_keys
        internal = await call(client, "kv_list", prefix=p + "r", include_internal=True)
        assert [i["key"] for i in internal["items"]] == [p + "r1", p + "r2", p + "reg/svc/1", p + "reh", p + "rz"]
        first = await call(client, "kv_list", prefix=p + "r", limit=2)
        assert [i["key"] for i in first["items"]] == r_keys[:2]
        assert first["next_cursor"] is not None
        second = await call(client, "kv_list", prefix=p + "r", limit=2, cursor=first["next_cursor"])
        assert [i["key"] for i in second["items"]] == r_keys[2:]
        assert second["next_cursor"] is None
        under_reg = await call(client, "kv_list", prefix=p + "reg/")
        assert under_reg["items"] == []
        under_reg_internal = await call(client, "kv_list", prefix=p + "reg/", include_internal=True)
        assert [i["key"] for i in under_reg_internal["items"]] == [p + "reg/svc/1"]

        # "" lists what the server may see: only this test's keys, registry hidden
        everything = await call(client, "kv_list", prefix="", limit=1000, keys_only=True)
        listed = [i["key"] for i in everything["items"]]
        assert listed == sorted([*paged, p + "pagex", *r_keys])

        for bad_limit, rule in ((0, "at least 1, got 0"), (1001, "at most 1000, got 1001"), (-1, "at least 1")):
            err = await call_error(client, "kv_list", prefix=p, limit=bad_limit)
            assert f"`limit` must be {rule}" in err
        bad_cursor = await call_error(client, "kv_list", prefix=p + "page/", cursor="@@not-a-cursor@@")
        assert "cursor" in bad_cursor
        foreign = await call_error(client, "kv_list", prefix=p + "page/", cursor=first["next_cursor"])
        assert "cursor" in foreign


async def test_kv_list_hides_default_registry_prefix(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    registry = f"kk_service/test-{uuid.uuid4().hex[:12]}/"
    try:
        put(etcdctl, registry + "svc/1", "instance")
        put(etcdctl, key_prefix + "app", "config")
        # default registry_prefix (kk_service/); only this test's keys are allowed
        async with served(etcd_endpoint, allowed_prefixes=f"{key_prefix},{registry}") as client:
            hidden = await call(client, "kv_list", prefix="", keys_only=True)
            assert [i["key"] for i in hidden["items"]] == [key_prefix + "app"]
            shown = await call(client, "kv_list", prefix="", keys_only=True, include_internal=True)
            assert [i["key"] for i in shown["items"]] == [registry + "svc/1", key_prefix + "app"]
            # a prefix delete inside the registry's root is refused; nothing is deleted
            refused = await call_error(client, "kv_delete", key=registry, prefix=True)
            assert "service registry" in refused and "Nothing was written" in refused
            assert keys_under(etcdctl, registry) == [registry + "svc/1"]
    finally:
        etcdctl("del", registry, "--prefix")


async def test_kv_delete(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    p = key_prefix
    put(etcdctl, p + "single", "x")
    for name in ("one", "two", "deep/three"):
        put(etcdctl, f"{p}d/a/{name}", name)
    put(etcdctl, p + "d/ab", "sibling")
    put(etcdctl, p + "d/a", "the prefix itself as a key")
    rev = put(etcdctl, p + "cas", "guarded")
    put(etcdctl, p + "reg/svc/1", "registry")  # the registry prefix of this server

    async with server(etcd_endpoint, key_prefix) as client:
        one = await call(client, "kv_delete", key=p + "single")
        assert one["deleted"] == 1
        assert value_of(etcdctl, p + "single") is None
        assert one["revision"] == store_revision(etcdctl)
        again = await call(client, "kv_delete", key=p + "single")
        assert again["deleted"] == 0

        many = await call(client, "kv_delete", key=p + "d/a/", prefix=True)
        assert many["deleted"] == 3
        assert keys_under(etcdctl, p + "d/") == [p + "d/a", p + "d/ab"]

        # compare-and-swap
        stale = await call_error(client, "kv_delete", key=p + "cas", expected_revision=rev - 1)
        assert f"revision conflict on {p}cas: expected {rev - 1}, found {rev}" in stale
        assert value_of(etcdctl, p + "cas") == b"guarded"
        both = await call_error(client, "kv_delete", key=p + "d/", prefix=True, expected_revision=rev)
        assert "expected_revision" in both and "prefix" in both
        assert keys_under(etcdctl, p + "d/") == [p + "d/a", p + "d/ab"]
        ok = await call(client, "kv_delete", key=p + "cas", expected_revision=rev)
        assert ok["deleted"] == 1
        assert value_of(etcdctl, p + "cas") is None
        missing_cas = await call_error(client, "kv_delete", key=p + "cas", expected_revision=rev)
        assert f"revision conflict on {p}cas: expected {rev}, found 0" in missing_cas

        # a prefix delete over the whole test prefix keeps the registry's keys
        rest = await call(client, "kv_delete", key=p, prefix=True)
        assert rest["deleted"] == 2
        assert keys_under(etcdctl, p) == [p + "reg/svc/1"]

        empty = await call_error(client, "kv_delete", key="")
        assert "empty" in empty


async def test_kv_history(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    key = key_prefix + "h"
    revs = []
    for i in range(1, 6):
        revs.append(put(etcdctl, key, f"v{i}"))
        put(etcdctl, key_prefix + "noise", str(i))  # other writes between versions

    async with server(etcd_endpoint, key_prefix) as client:
        full = await call(client, "kv_history", key=key)
        assert full["key"] == key
        assert [(v["value"], v["version"], v["mod_revision"]) for v in full["versions"]] == [
            (f"v{i}", i, revs[i - 1]) for i in range(5, 0, -1)
        ]
        assert full["complete"] is True
        assert full.get("note") is None

        limited = await call(client, "kv_history", key=key, limit=2)
        assert [v["value"] for v in limited["versions"]] == ["v5", "v4"]
        assert limited["complete"] is False
        assert "limit" in limited["note"]

        etcdctl("compact", str(revs[2]))  # v3's revision is the oldest one kept
        cut = await call(client, "kv_history", key=key)
        assert [v["value"] for v in cut["versions"]] == ["v5", "v4", "v3"]
        assert cut["complete"] is False
        assert "compact" in cut["note"]

        missing = await call_error(client, "kv_history", key=key_prefix + "missing")
        assert f"key not found: {key_prefix}missing" in missing
        for bad in (0, 101):
            err = await call_error(client, "kv_history", key=key, limit=bad)
            assert "limit" in err


async def test_kv_rollback(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    key = key_prefix + "rb"
    before = store_revision(etcdctl)
    r1 = put(etcdctl, key, "good")
    r2 = put(etcdctl, key, "better")
    r3 = put(etcdctl, key, "broken")

    async with server(etcd_endpoint, key_prefix) as client:
        done = await call(client, "kv_rollback", key=key, to_revision=r1)
        kv = stored(etcdctl, key)
        assert kv is not None and kv["value"] == b"good"
        assert done == {
            "key": key,
            "restored_from_revision": r1,
            "old_revision": r3,
            "new_revision": kv["mod_revision"],
            "dry_run": False,
            "change": f"write back the value key {key} had at revision {r1} over its current value "
            f"(mod_revision {r3}; that value stays in the history)",
            "removes": [],
        }
        assert kv["version"] == 4  # a new write, not a rewrite of history

        # a revision where the key did not exist: error, nothing written
        absent = await call_error(client, "kv_rollback", key=key, to_revision=before)
        assert "did not exist" in absent and str(before) in absent
        assert stored(etcdctl, key) == kv

        # a deleted key comes back
        etcdctl("del", key)
        back = await call(client, "kv_rollback", key=key, to_revision=r2)
        assert back["old_revision"] == 0
        assert back["restored_from_revision"] == r2
        assert value_of(etcdctl, key) == b"better"

        bad = await call_error(client, "kv_rollback", key=key, to_revision=0)
        assert "to_revision" in bad

        # a compacted revision: error mentioning compaction, nothing written
        now = stored(etcdctl, key)
        assert now is not None
        etcdctl("compact", str(now["mod_revision"]))
        compacted = await call_error(client, "kv_rollback", key=key, to_revision=r1)
        assert "compact" in compacted.lower()
        assert stored(etcdctl, key) == now


async def test_kv_export_import(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    p = key_prefix + "cfg/"
    put(etcdctl, p + "a", "alpha")
    put(etcdctl, p + "b", '{"x": 1}')
    put(etcdctl, p + "c", "gamma")
    async with EtcdClient([etcd_endpoint]) as etcd:
        await etcd.put((p + "bin").encode(), b"\x00\xff\x10")
    put(etcdctl, key_prefix + "cfgsibling", "not under cfg/")

    async with server(etcd_endpoint, key_prefix) as client:
        doc = await call(client, "kv_export", prefix=p)
        assert doc["format"] == "kk-etcd-export/v1"
        assert doc["prefix"] == p
        assert doc["revision"] == store_revision(etcdctl)
        assert [(i["key"], i["value"], i["encoding"]) for i in doc["items"]] == [
            (p + "a", "alpha", "utf-8"),
            (p + "b", '{"x": 1}', "utf-8"),
            (p + "bin", base64.b64encode(b"\x00\xff\x10").decode(), "base64"),
            (p + "c", "gamma", "utf-8"),
        ]

        # change the store after the export
        put(etcdctl, p + "b", '{"x": 2}')
        etcdctl("del", p + "c")
        async with EtcdClient([etcd_endpoint]) as etcd:
            await etcd.delete((p + "bin").encode())
        put(etcdctl, p + "d", "extra")
        changed = {k: value_of(etcdctl, k) for k in keys_under(etcdctl, p)}
        rev_before = store_revision(etcdctl)

        plan = await call(client, "kv_import", document=doc)  # dry run by default, merge
        assert plan["dry_run"] is True and plan["mode"] == "merge" and plan["applied"] == 0
        assert plan["plan"] == {
            "create": [p + "bin", p + "c"],
            "update": [p + "b"],
            "delete": [],
            "unchanged": [p + "a"],
        }
        assert store_revision(etcdctl) == rev_before
        assert {k: value_of(etcdctl, k) for k in keys_under(etcdctl, p)} == changed

        fingerprint = plan["plan_fingerprint"]
        applied = await call(client, "kv_import", document=doc, dry_run=False, plan_fingerprint=fingerprint)
        assert applied["dry_run"] is False and applied["plan_fingerprint"] == fingerprint
        assert applied["applied"] == 3
        assert applied["revision"] == store_revision(etcdctl)
        assert value_of(etcdctl, p + "b") == b'{"x": 1}'
        assert value_of(etcdctl, p + "c") == b"gamma"
        assert value_of(etcdctl, p + "bin") == b"\x00\xff\x10"
        assert value_of(etcdctl, p + "d") == b"extra"  # merge keeps keys not in the document

        # replace, with the document as a JSON string: also deletes keys not in it
        as_text = json.dumps(doc)
        replace_plan = await call(client, "kv_import", document=as_text, mode="replace")
        assert replace_plan["plan"] == {
            "create": [],
            "update": [],
            "delete": [p + "d"],
            "unchanged": [p + "a", p + "b", p + "bin", p + "c"],
        }
        assert value_of(etcdctl, p + "d") == b"extra"
        fingerprint = replace_plan["plan_fingerprint"]
        replaced = await call(
            client, "kv_import", document=as_text, mode="replace", dry_run=False, plan_fingerprint=fingerprint
        )
        assert replaced["applied"] == 1
        assert keys_under(etcdctl, p) == [p + "a", p + "b", p + "bin", p + "c"]
        assert value_of(etcdctl, key_prefix + "cfgsibling") == b"not under cfg/"

        fingerprint = (await call(client, "kv_import", document=doc, mode="replace"))["plan_fingerprint"]
        nothing = await call(
            client, "kv_import", document=doc, mode="replace", dry_run=False, plan_fingerprint=fingerprint
        )
        assert nothing["applied"] == 0
        assert len(nothing["plan"]["unchanged"]) == 4

        # bad documents: errors, nothing written
        rev_before = store_revision(etcdctl)
        broken = await call_error(client, "kv_import", document='{\n  "format": "kk-etcd-export/v1",\n  "items": [}')
        assert "line 3, column 13" in broken
        wrong = dict(doc, format="something-else/v9")
        wrong_err = await call_error(client, "kv_import", document=wrong, dry_run=False)
        assert "not a kk-etcd-export/v1 document: format" in wrong_err
        outside = dict(doc, items=[{"key": key_prefix + "elsewhere", "value": "x"}])
        outside_err = await call_error(client, "kv_import", document=outside, dry_run=False)
        assert "not under" in outside_err
        assert store_revision(etcdctl) == rev_before
        assert value_of(etcdctl, key_prefix + "elsewhere") is None


async def test_kv_import_large_reports_progress(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    p = key_prefix + "bulk/"
    count = 300
    doc = {
        "format": "kk-etcd-export/v1",
        "prefix": p,
        "revision": 1,
        "items": [{"key": f"{p}{i:04d}", "value": f"value {i}"} for i in range(count)],
    }
    reports: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total))

    async with server(etcd_endpoint, key_prefix) as client:
        fingerprint = (await call(client, "kv_import", document=doc))["plan_fingerprint"]
        arguments = {"document": doc, "dry_run": False, "plan_fingerprint": fingerprint}
        result = await client.call_tool("kv_import", arguments, progress_callback=on_progress)
        assert not result.is_error, result.content
        out = result.structured_content
        assert out is not None
        assert out["applied"] == count
        assert len(out["plan"]["create"]) == count

    assert reports, "no progress notifications arrived"
    assert all(total == count for _, total in reports)
    done = [d for d, _ in reports]
    assert done == sorted(done)
    assert done[-1] == count
    assert len([d for d in done if 0 < d < count]) >= 2  # several transactions

    assert len(keys_under(etcdctl, p)) == count
    # at most 128 operations per transaction: 300 keys need at least 3 store revisions
    out_json = json.loads(etcdctl("get", p, "--prefix", "-w", "json").stdout)
    assert len(out_json["kvs"]) == count
    per_revision: dict[int, int] = {}
    for kv in out_json["kvs"]:
        per_revision[kv["mod_revision"]] = per_revision.get(kv["mod_revision"], 0) + 1
    assert len(per_revision) >= 3
    assert max(per_revision.values()) <= 128
    assert value_of(etcdctl, f"{p}0299") == b"value 299"


async def test_kv_put_larger_than_etcd_accepts_is_refused(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    key = f"{key_prefix}big"
    # max_value_bytes above etcd's own limit, so that etcd's refusal is what is tested here
    async with served(etcd_endpoint, max_value_bytes=str(4 << 20)) as client:
        text = await call_error(client, "kv_put", key=key, value="x" * (1600 * 1024))
    assert "larger than etcd accepts" in text and "Nothing was written" in text
    assert etcdctl("get", key, "--keys-only").stdout.strip() == ""
