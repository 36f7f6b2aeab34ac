"""``list_and_watch`` against real etcd: a snapshot then every change once, a start revision, a new snapshot
after a compaction, and retries after failures; ``range_pages`` reads a range at one revision."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest
from etcd_under_test import make_etcd
from polling import HANG_GUARD, eventually
from tcp_proxy import tcp_proxy

from kk_etcd_mcp.backoff import Backoff
from kk_etcd_mcp.errors import UnavailableError
from kk_etcd_mcp.etcd import EmbeddedEtcd, EtcdClient, RangeUpdate, Snapshot, WatchBatch, list_and_watch
from kk_etcd_mcp.etcd.embedded import free_port

pytestmark = pytest.mark.anyio


async def next_update(updates: AsyncGenerator[RangeUpdate, None]) -> RangeUpdate:
    with anyio.fail_after(HANG_GUARD):
        return await anext(updates)


def changes(update: RangeUpdate) -> list[tuple[str, str]]:
    assert isinstance(update, WatchBatch), update
    return [(e.type, e.kv.key.decode()) for e in update.events]


async def test_a_snapshot_then_every_change_once(etcd_endpoint: str, key_prefix: str) -> None:
    async with EtcdClient([etcd_endpoint]) as etcd:
        await etcd.put(f"{key_prefix}a", "1")
        await etcd.put(f"{key_prefix}b", "2")
        await etcd.put(f"{key_prefix}c", "3")
        async with aclosing(list_and_watch(etcd, key_prefix, prefix=True)) as updates:
            snapshot = await next_update(updates)
            assert isinstance(snapshot, Snapshot) and not snapshot.relisted
            assert [(kv.key.decode(), kv.value) for kv in snapshot.kvs] == [
                (f"{key_prefix}a", b"1"),
                (f"{key_prefix}b", b"2"),
                (f"{key_prefix}c", b"3"),
            ]
            # Written right after the snapshot, before the watch exists: still delivered, once.
            await etcd.put(f"{key_prefix}d", "4")
            await etcd.delete(f"{key_prefix}a")
            await etcd.put("elsewhere", "not followed")
            seen: list[tuple[str, str]] = []
            while len(seen) < 2:
                seen += changes(await next_update(updates))
            assert seen == [("put", f"{key_prefix}d"), ("delete", f"{key_prefix}a")]


async def test_keys_only_snapshot_and_a_single_key(etcd_endpoint: str, key_prefix: str) -> None:
    key = f"{key_prefix}only"
    async with EtcdClient([etcd_endpoint]) as etcd:
        await etcd.put(key, "value")
        await etcd.put(f"{key}-not-this-one", "x")
        async with aclosing(list_and_watch(etcd, key, keys_only=True)) as updates:
            snapshot = await next_update(updates)
            assert isinstance(snapshot, Snapshot)
            assert [(kv.key.decode(), kv.value) for kv in snapshot.kvs] == [(key, b"")]
            await etcd.put(f"{key}-not-this-one", "y")
            await etcd.put(key, "new")
            update = await next_update(updates)
            assert changes(update) == [("put", key)]
            assert isinstance(update, WatchBatch) and update.events[0].kv.value == b"new"


async def test_a_start_revision_skips_the_snapshot(etcd_endpoint: str, key_prefix: str) -> None:
    async with EtcdClient([etcd_endpoint]) as etcd:
        first = await etcd.put(f"{key_prefix}a", "1")
        await etcd.put(f"{key_prefix}b", "2")
        updates = list_and_watch(etcd, key_prefix, prefix=True, start_revision=first.revision + 1)
        async with aclosing(updates):
            assert changes(await next_update(updates)) == [("put", f"{key_prefix}b")]


async def test_range_end_and_prefix_together_are_refused(etcd_endpoint: str) -> None:
    async with EtcdClient([etcd_endpoint]) as etcd:
        with pytest.raises(ValueError, match="not both"):
            await anext(list_and_watch(etcd, "a", "b", prefix=True))


async def test_a_compaction_while_cut_off_lists_again(own_etcd: EmbeddedEtcd) -> None:
    async with (
        tcp_proxy("127.0.0.1", own_etcd.client_port) as proxy,
        EtcdClient([own_etcd.client_url]) as writer,
        EtcdClient([proxy.url]) as watcher,
    ):
        await writer.put("p/a", "1")
        async with aclosing(list_and_watch(watcher, "p/", prefix=True)) as updates:
            first = await next_update(updates)
            assert isinstance(first, Snapshot) and [kv.key for kv in first.kvs] == [b"p/a"]
            await writer.put("p/b", "2")
            assert changes(await next_update(updates)) == [("put", "p/b")]

            proxy.cut()  # the watch breaks; meanwhile keys change and etcd compacts that history away
            await writer.delete("p/a")
            await writer.put("p/c", "3")
            last = await writer.put("elsewhere", "x")
            await writer.compact(last.revision)
            proxy.restore()

            relisted = await next_update(updates)
            assert isinstance(relisted, Snapshot) and relisted.relisted
            assert relisted.revision >= last.revision
            assert [kv.key for kv in relisted.kvs] == [b"p/b", b"p/c"]
            await writer.put("p/d", "4")
            assert changes(await next_update(updates)) == [("put", "p/d")], "the watch goes on after the relist"


async def test_failures_are_raised_or_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """etcd away at the start: raised without ``retry``; with it, logged and tried again until etcd is up."""
    port = free_port()
    server = make_etcd(tmp_path / "data", port, free_port(), log_file=tmp_path / "etcd.log")
    async with EtcdClient([f"http://127.0.0.1:{port}"], request_timeout=1) as etcd:
        with anyio.fail_after(HANG_GUARD), pytest.raises(UnavailableError):
            await anext(list_and_watch(etcd, "p/", prefix=True))

        def retried() -> list[str]:
            return [r.getMessage() for r in caplog.records if "trying again in" in r.getMessage()]

        async def start_once_retried() -> None:  # etcd comes up only after a failed read was logged
            await eventually(retried, "a failed read logged and tried again")
            await server.astart()

        try:
            async with aclosing(list_and_watch(etcd, "p/", prefix=True, retry=Backoff(0.1, 0.5))) as updates:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(start_once_retried)
                    snapshot = await next_update(updates)
                assert isinstance(snapshot, Snapshot) and snapshot.kvs == []
        finally:
            await server.astop()
    assert "etcd unavailable" in retried()[0], retried()


async def test_range_pages_reads_one_revision(etcd_endpoint: str, key_prefix: str) -> None:
    async with EtcdClient([etcd_endpoint]) as etcd:
        for i in range(5):
            await etcd.put(f"{key_prefix}{i}", str(i))
        pages = etcd.range_pages(key_prefix, f"{key_prefix}~", page_size=2)
        first = await anext(pages)
        await etcd.put(f"{key_prefix}9", "written after the first page")
        rest = [page async for page in pages]
        assert [len(page.kvs) for page in [first, *rest]] == [2, 2, 1]
        assert {page.revision for page in rest} == {first.revision}
        assert [kv.key.decode() for page in [first, *rest] for kv in page.kvs] == [f"{key_prefix}{i}" for i in range(5)]
        empty = [page async for page in etcd.range_pages(f"{key_prefix}none/", f"{key_prefix}none0")]
        assert len(empty) == 1 and empty[0].kvs == [] and empty[0].revision > 0
