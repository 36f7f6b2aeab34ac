"""etcd's KV requests on our own HTTP/2 channel (``etcd/kv_channel.py`` on ``h2grpc``), judged by a real
etcd behind a proxy that can cut or silence connections: endpoint failover, a write never sent twice
on a guess, a read sent again after a lost connection, a silent connection given up, and values that
need flow control both ways.

The rest of the suite (every KV tool, TLS, auth, etcd 3.4) runs on this channel too.
"""

from __future__ import annotations

import anyio
import pytest
from polling import HANG_GUARD, eventually
from tcp_proxy import TcpProxy, tcp_proxy

from kk_etcd_mcp.errors import UnavailableError
from kk_etcd_mcp.etcd import EtcdClient, prefix_end
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def key(key_prefix: str) -> str:
    return f"{key_prefix}k"


async def test_a_dead_endpoint_is_skipped_for_the_next(etcd_endpoint: str, key: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with EtcdClient([dead, etcd_endpoint]) as etcd:
        with anyio.fail_after(HANG_GUARD):
            await etcd.put(key, "through the second endpoint")
            kv = await etcd.get(key)
    assert kv is not None and kv.value == b"through the second endpoint"


async def test_no_endpoint_answering_names_them_all(key: str) -> None:
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    async with EtcdClient(dead, request_timeout=2) as etcd:
        with anyio.fail_after(HANG_GUARD), pytest.raises(UnavailableError) as err:
            await etcd.get(key)
    assert str(err.value) == (
        f"etcd unavailable at {','.join(dead)}: connection refused (is etcd running at that address?)"
    )


async def lose_the_answer(proxy: TcpProxy, witness: EtcdClient, key: str, written: bool) -> None:
    """Once etcd has the request (``written``: the key exists), cut the connection it came on, then let
    connections through again: a client that sent it again now would get in."""
    if written:
        await eventually(lambda: witness.get(key), f"{key} written")
    else:
        await anyio.sleep(0.3)  # a read leaves no trace: give it time to reach etcd
    proxy.cut()
    proxy.restore()


async def test_a_write_whose_answer_is_lost_is_not_sent_again(own_etcd: EmbeddedEtcd, key: str) -> None:
    async with (
        tcp_proxy("127.0.0.1", own_etcd.client_port) as proxy,
        EtcdClient([proxy.url]) as etcd,
        EtcdClient([own_etcd.client_url]) as witness,
    ):
        await etcd.get(key)  # the connection is open and kept
        proxy.silence()
        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lose_the_answer, proxy, witness, key, True)
                with pytest.raises(UnavailableError, match="connection"):
                    await etcd.put(key, "once")
            kv = await witness.get(key)
            assert kv is not None and kv.version == 1  # applied once: not sent again on a new connection
            await etcd.put(key, "twice")  # and the client goes on, on a new connection
        kv = await witness.get(key)
        assert kv is not None and (kv.value, kv.version) == (b"twice", 2)


async def test_a_read_whose_answer_is_lost_is_sent_again(own_etcd: EmbeddedEtcd, key: str) -> None:
    async with (
        tcp_proxy("127.0.0.1", own_etcd.client_port) as proxy,
        EtcdClient([proxy.url]) as etcd,
        EtcdClient([own_etcd.client_url]) as witness,
    ):
        await witness.put(key, "read twice")
        await etcd.get(key)
        proxy.silence()
        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lose_the_answer, proxy, witness, key, False)
                kv = await etcd.get(key)
    assert kv is not None and kv.value == b"read twice"


async def test_a_silent_connection_is_given_up_after_a_timeout(own_etcd: EmbeddedEtcd, key: str) -> None:
    # A peer gone without a word (a pulled cable, a dropped NAT entry) leaves the connection open: the
    # call that timed out on it must not leave every later call to time out on it too.
    async with (
        tcp_proxy("127.0.0.1", own_etcd.client_port) as proxy,
        EtcdClient([proxy.url], request_timeout=0.5) as etcd,
    ):
        await etcd.put(key, "still here")
        proxy.silence()
        with anyio.fail_after(HANG_GUARD):
            with pytest.raises(UnavailableError, match="no answer within the request timeout"):
                await etcd.get(key)
            kv = await etcd.get(key)  # on a new connection, which the proxy lets through
    assert kv is not None and kv.value == b"still here"


async def test_values_larger_than_the_flow_control_windows(etcd_endpoint: str, key_prefix: str) -> None:
    # A 1 MiB value is more than etcd's initial window (64 KiB) and five of them more than ours (4 MiB):
    # both sides must wait for WINDOW_UPDATE and go on.
    values = {f"{key_prefix}big/{i}": bytes([65 + i]) * (1024 * 1024) for i in range(5)}
    async with EtcdClient([etcd_endpoint]) as etcd:
        with anyio.fail_after(HANG_GUARD):
            for name, value in values.items():
                await etcd.put(name, value)
            page = await etcd.range(f"{key_prefix}big/", prefix_end(f"{key_prefix}big/"))
    assert {kv.key.decode(): kv.value for kv in page.kvs} == values
