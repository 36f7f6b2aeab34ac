"""The etcd adapter against real etcd processes: errors, outages, watch resume, compaction, auth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from etcd_under_test import make_etcd
from polling import HANG_GUARD
from tcp_proxy import TcpProxy, tcp_proxy

from kk_etcd_mcp.errors import (
    AuthenticationFailedError,
    CompactedError,
    PermissionDeniedError,
    UnavailableError,
)
from kk_etcd_mcp.etcd import Compare, EtcdClient, Get, Put, WatchEvent, prefix_end
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_port

pytestmark = pytest.mark.anyio

# Hang guards only: a test fails if a call never returns. No test asserts on elapsed time.


async def test_kv_and_txn_round_trip(etcd_endpoint: str, key_prefix: str) -> None:
    key = f"{key_prefix}a".encode()
    async with EtcdClient([etcd_endpoint]) as etcd:
        first = await etcd.put(key, b"1", prev_kv=True)
        assert first.prev is None
        second = await etcd.put(key, b"2", prev_kv=True)
        assert second.prev is not None and second.prev.value == b"1"
        kv = await etcd.get(key)
        assert kv is not None and (kv.value, kv.version, kv.mod_revision) == (b"2", 2, second.revision)

        failed = await etcd.txn([Compare(key, "mod", "==", first.revision)], [Put(key, b"x")], [Get(key)])
        assert not failed.succeeded
        assert (await etcd.get(key)).value == b"2"  # type: ignore[union-attr]

        done = await etcd.txn([Compare(key, "mod", "==", second.revision)], [Put(key, b"3")])
        assert done.succeeded
        page = await etcd.range(key_prefix, prefix_end(key_prefix))
        assert [kv.value for kv in page.kvs] == [b"3"]


async def test_unavailable_at_start_then_recovers_without_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with EtcdClient([url], request_timeout=2) as etcd:
        with anyio.fail_after(HANG_GUARD), pytest.raises(UnavailableError) as err:
            await etcd.get("k")
        assert str(err.value).startswith(f"etcd unavailable at {url}: ")

        server = make_etcd(tmp_path / "data", port, free_port(), log_file=tmp_path / "etcd.log")
        await server.astart()
        try:
            with anyio.fail_after(HANG_GUARD):
                while True:
                    try:
                        await etcd.put("k", "v")
                        break
                    except UnavailableError:
                        await anyio.sleep(0.2)
            assert (await etcd.get("k")).value == b"v"  # type: ignore[union-attr]
        finally:
            await server.astop()


async def test_frozen_etcd_times_out_instead_of_hanging(own_etcd: EmbeddedEtcd) -> None:
    async with EtcdClient([own_etcd.client_url], request_timeout=1) as etcd:
        await etcd.put("k", "v")
        own_etcd.pause()
        try:
            with anyio.fail_after(HANG_GUARD), pytest.raises(UnavailableError, match="etcd unavailable at"):
                await etcd.get("k")
        finally:
            own_etcd.resume()
        assert (await etcd.get("k")).value == b"v"  # type: ignore[union-attr]


async def test_a_request_to_frozen_etcd_ends_with_the_callers_cancel_scope(own_etcd: EmbeddedEtcd) -> None:
    """The caller's scope cancels a request the ordinary way (grpc_await's deadline yields to it), whether
    it is moved on from or fails after its deadline, and the client goes on working."""
    async with EtcdClient([own_etcd.client_url], request_timeout=HANG_GUARD) as etcd:
        await etcd.put("k", "v")
        own_etcd.pause()
        try:
            with anyio.move_on_after(0.3) as scope:
                await etcd.get("k")
            assert scope.cancelled_caught
            with pytest.raises(TimeoutError):
                with anyio.fail_after(0.3):
                    await etcd.get("k")
        finally:
            own_etcd.resume()
        with anyio.fail_after(HANG_GUARD):
            assert (await etcd.get("k")).value == b"v"  # type: ignore[union-attr]


async def _collect(etcd: EtcdClient, prefix: str, into: list[WatchEvent], start_revision: int = 0) -> None:
    async for batch in etcd.watch(prefix, prefix_end(prefix), start_revision=start_revision):
        into.extend(batch.events)


async def _until(predicate: object, what: str) -> None:
    with anyio.fail_after(HANG_GUARD):
        while not predicate():  # type: ignore[operator]
            await anyio.sleep(0.05)


async def test_watch_resumes_after_broken_stream_without_gaps_or_duplicates(
    etcd_endpoint: str, key_prefix: str
) -> None:
    host, port = etcd_endpoint.removeprefix("http://").split(":")
    events: list[WatchEvent] = []
    async with (
        tcp_proxy(host, int(port)) as proxy,
        EtcdClient([etcd_endpoint]) as writer,
        EtcdClient([proxy.url]) as watcher,
        anyio.create_task_group() as tg,
    ):
        # From a known revision, not "from now": under load the first Watch call may itself break.
        start = await writer.put(f"{key_prefix}0-start", "")
        tg.start_soon(_collect, watcher, key_prefix, events, start.revision + 1)
        await writer.put(f"{key_prefix}1", "a")
        await _until(lambda: len(events) == 1, "first event")

        proxy.cut()  # the stream breaks; writes go on directly
        for i in range(2, 6):
            await writer.put(f"{key_prefix}{i}", "b")
        await writer.delete(f"{key_prefix}1")
        proxy.restore()

        await _until(lambda: len(events) == 6, "events written during the break")
        await writer.put(f"{key_prefix}6", "c")
        await _until(lambda: len(events) == 7, "event after the break")
        tg.cancel_scope.cancel()
    revisions = [e.kv.mod_revision for e in events]
    assert revisions == sorted(set(revisions)), "an event was duplicated or reordered"
    assert [(e.type, e.kv.key.decode().removeprefix(key_prefix)) for e in events] == [
        ("put", "1"),
        ("put", "2"),
        ("put", "3"),
        ("put", "4"),
        ("put", "5"),
        ("delete", "1"),
        ("put", "6"),
    ]


async def test_watch_raises_compacted_instead_of_hanging(own_etcd: EmbeddedEtcd) -> None:
    events: list[WatchEvent] = []
    compacted_at: list[int] = []

    async def break_and_compact(proxy: TcpProxy, writer: EtcdClient) -> None:
        await writer.put("p/1", "a")
        await _until(lambda: len(events) == 1, "first event")
        proxy.cut()
        for i in range(5):
            last = await writer.put("p/2", str(i))
        await writer.compact(last.revision)
        compacted_at.append(last.revision)
        proxy.restore()

    async with (
        tcp_proxy("127.0.0.1", own_etcd.client_port) as proxy,
        EtcdClient([own_etcd.client_url]) as writer,
        EtcdClient([proxy.url]) as watcher,
        anyio.create_task_group() as tg,
    ):
        # From a known revision, not "from now": under load the first Watch call may itself break.
        start = await writer.put("p/0", "")
        tg.start_soon(break_and_compact, proxy, writer)
        with anyio.fail_after(HANG_GUARD), pytest.raises(CompactedError) as err:
            await _collect(watcher, "p/", events, start.revision + 1)
    assert err.value.compact_revision == compacted_at[0]
    assert "compacted" in str(err.value)


async def test_watch_from_compacted_revision_raises(own_etcd: EmbeddedEtcd) -> None:
    async with EtcdClient([own_etcd.client_url]) as etcd:
        for i in range(3):
            last = await etcd.put("k", str(i))
        await etcd.compact(last.revision)
        with anyio.fail_after(HANG_GUARD), pytest.raises(CompactedError):
            await _collect(etcd, "k", [], start_revision=1)


def _enable_auth(server: EmbeddedEtcd, etcdctl: object) -> None:
    ctl = etcdctl  # the session fixture, pointed at this server
    for args in (
        ("user", "add", "root:rootpw"),
        ("user", "grant-role", "root", "root"),
        ("role", "add", "reader"),
        ("role", "grant-permission", "reader", "read", "app/", "--prefix=true"),
        ("user", "add", "alice:alicepw"),
        ("user", "grant-role", "alice", "reader"),
        ("auth", "enable"),
    ):
        ctl(*args, endpoint=server.client_url)  # type: ignore[operator]


@pytest.fixture
def auth_etcd(tmp_path: Path, etcdctl: object) -> Iterator[EmbeddedEtcd]:
    """An etcd with auth on and tokens that expire after 2 idle seconds."""
    server = make_etcd(
        tmp_path / "data",
        free_port(),
        free_port(),
        log_file=tmp_path / "etcd.log",
        extra_args=["--auth-token-ttl=2"],
    )
    server.start()
    _enable_auth(server, etcdctl)
    yield server
    server.stop()


async def test_auth_token_expiry_is_survived(auth_etcd: EmbeddedEtcd) -> None:
    async with EtcdClient([auth_etcd.client_url], username="root", password="rootpw") as etcd:
        await etcd.put("app/x", "1")
        await anyio.sleep(4)  # the simple token expires after 2 idle seconds
        await etcd.put("app/x", "2")
        assert (await etcd.get("app/x")).value == b"2"  # type: ignore[union-attr]


async def test_wrong_password_and_missing_credentials(auth_etcd: EmbeddedEtcd) -> None:
    async with EtcdClient([auth_etcd.client_url], username="root", password="not-the-pw") as etcd:
        with pytest.raises(AuthenticationFailedError) as err:
            await etcd.get("app/x")
        assert "authentication failed for etcd user root" in str(err.value)
        assert "not-the-pw" not in str(err.value)
    async with EtcdClient([auth_etcd.client_url]) as etcd:
        with pytest.raises(AuthenticationFailedError, match="no credentials are configured"):
            await etcd.get("app/x")


async def test_permission_denied_names_user_and_key(auth_etcd: EmbeddedEtcd) -> None:
    async with EtcdClient([auth_etcd.client_url], username="alice", password="alicepw") as etcd:
        assert await etcd.get("app/x") is None  # reading is granted
        with pytest.raises(PermissionDeniedError) as err:
            await etcd.put("app/x", "1")
        assert str(err.value).startswith("permission denied: alice may not write app/x")
    async with EtcdClient([auth_etcd.client_url], username="root", password="rootpw") as root:
        assert await root.get("app/x") is None  # nothing was written
