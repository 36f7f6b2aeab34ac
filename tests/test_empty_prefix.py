"""The empty prefix ("every key") through the real MCP tools, against an etcd of the test's own.

etcd refuses a request whose key is empty ("key is not provided"); etcd's Go client and etcdctl send
``\\0`` for "from the first key". Every way a prefix or a policy range reaches etcd (list and its
cursor, export, prefix delete, completions, and ranges cut by denied prefixes or the hidden registry
prefix) must start there.
"""

from __future__ import annotations

from contextlib import aclosing

import pytest
from conftest import EtcdCtl
from mcp_helpers import call, call_error, served
from mcp_types import ResourceTemplateReference

from kk_etcd_mcp.etcd import Delete, DeleteResult, EtcdClient, Get, RangePage, prefix_end
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd

pytestmark = pytest.mark.anyio

KV_TEMPLATE = ResourceTemplateReference(uri="etcd://kv/{+key}")

KEYS = {"a": "1", "b/1": "2", "secret/x": "3", "kk_service/registration/Http/web/10.0.0.1:80": "{}"}


def keys_in(etcdctl: EtcdCtl, endpoint: str) -> list[str]:
    out = etcdctl("get", "", "--prefix", "--keys-only", endpoint=endpoint).stdout
    return [line for line in out.splitlines() if line]


async def test_every_allowed_key_is_listed_exported_completed_and_deleted(
    own_etcd: EmbeddedEtcd, etcdctl: EtcdCtl
) -> None:
    endpoint = own_etcd.client_url
    for key, value in KEYS.items():
        etcdctl("put", key, value, endpoint=endpoint)

    # Allowed: every key (the default), less a denied prefix; the registry's keys are hidden from listings.
    async with served(endpoint, hub="false", denied_prefixes="secret/") as client:
        listed = await call(client, "kv_list", prefix="")
        assert [(i["key"], i["value"]) for i in listed["items"]] == [("a", "1"), ("b/1", "2")]
        assert listed["next_cursor"] is None

        first = await call(client, "kv_list", prefix="", limit=1, keys_only=True)
        assert [i["key"] for i in first["items"]] == ["a"] and first["next_cursor"]
        rest = await call(client, "kv_list", prefix="", limit=1, keys_only=True, cursor=first["next_cursor"])
        assert [i["key"] for i in rest["items"]] == ["b/1"]

        internal = await call(client, "kv_list", prefix="", keys_only=True, include_internal=True)
        assert [i["key"] for i in internal["items"]] == ["a", "b/1", "kk_service/registration/Http/web/10.0.0.1:80"]

        exported = await call(client, "kv_export", prefix="")
        assert [(e["key"], e["value"]) for e in exported["items"]] == [("a", "1"), ("b/1", "2")]

        completed = (await client.complete(KV_TEMPLATE, {"name": "key", "value": ""})).completion
        assert completed.values == ["a", "b/1"]

        # Deleting everything would cross the denied prefix: refused, nothing deleted.
        refused = await call_error(client, "kv_delete", key="", prefix=True)
        assert "outside the allowed prefixes" in refused
    assert keys_in(etcdctl, endpoint) == sorted(KEYS)

    # Without a denied prefix, a prefix delete of "" removes every key but the registry's.
    async with served(endpoint, hub="false") as client:
        planned = await call(client, "kv_delete", key="", prefix=True, dry_run=True)
        assert planned["deleted"] == 3 and planned["keys"] == ["a", "b/1", "secret/x"]
        assert keys_in(etcdctl, endpoint) == sorted(KEYS)
        deleted = await call(client, "kv_delete", key="", prefix=True)
        assert deleted["deleted"] == 3
    assert keys_in(etcdctl, endpoint) == ["kk_service/registration/Http/web/10.0.0.1:80"]


async def test_the_adapter_reads_watches_and_deletes_from_the_first_key(own_etcd: EmbeddedEtcd) -> None:
    """The lowest layer: whatever builds a range from ``""`` (the hub's and the console's watches, paged
    readers, transactions) gets every key instead of etcd's refusal."""
    async with EtcdClient([own_etcd.client_url]) as etcd:
        await etcd.put("a", "1")
        everything = prefix_end("")
        assert [kv.key for kv in (await etcd.range("", everything)).kvs] == [b"a"]
        changes = etcd.watch("", everything, start_revision=1)
        async with aclosing(changes):
            batch = await anext(changes)
        assert [event.kv.key for event in batch.events] == [b"a"]
        result = await etcd.txn([], [Get(b"", everything), Delete(b"", everything)])
        page, deleted = result.results
        assert isinstance(page, RangePage) and [kv.key for kv in page.kvs] == [b"a"]
        assert isinstance(deleted, DeleteResult) and deleted.deleted == 1
        await etcd.put("b", "2")
        assert (await etcd.delete("", everything)).deleted == 1
