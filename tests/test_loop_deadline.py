"""An etcd request's deadline counts only time the event loop was free (``grpc_await.LoopTimeDeadline``),
on both paths: the KV channel's requests awaited in the caller's task (``await_within``) and etcd3aio's
in a task of their own (``await_grpc``). A stalled loop (a big value parsed, thousands of results
rendered) must not turn an answer that came in time into "etcd unavailable"; a loop stalled past
``MAX_STALL`` says so instead of blaming etcd.
"""

from __future__ import annotations

import asyncio
import time

import anyio
import pytest
from polling import HANG_GUARD

from kk_etcd_mcp import grpc_await
from kk_etcd_mcp.errors import UnavailableError
from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd

pytestmark = pytest.mark.anyio

TIMEOUT = 0.5  # the request timeout; each stall below is longer
STALL = 1.2


def stall_the_loop(seconds: float) -> None:
    """Block the event loop once the current request has been sent (the next callback it runs)."""
    asyncio.get_running_loop().call_soon(time.sleep, seconds)


async def test_a_stalled_loop_does_not_fail_requests_answered_in_time(etcd_endpoint: str, key_prefix: str) -> None:
    async with EtcdClient([etcd_endpoint], request_timeout=TIMEOUT) as etcd:
        await etcd.put(f"{key_prefix}k", "in time")
        with anyio.fail_after(HANG_GUARD):
            stall_the_loop(STALL)
            kv = await etcd.get(f"{key_prefix}k")  # the KV channel, in this task
            stall_the_loop(STALL)
            lease = await etcd.lease_grant(10)  # etcd3aio, in a task of its own
    assert kv is not None and kv.value == b"in time"
    assert lease > 0


async def test_a_loop_stalled_past_max_stall_says_so(
    own_etcd: EmbeddedEtcd, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grpc_await, "MAX_STALL", 0.3)
    async with EtcdClient([own_etcd.client_url], request_timeout=HANG_GUARD) as etcd:
        await etcd.put(f"{key_prefix}k", "v")
        own_etcd.pause()  # no answer comes: only the stall can end the requests
        try:
            with anyio.fail_after(HANG_GUARD):
                for request in (lambda: etcd.get(f"{key_prefix}k"), lambda: etcd.lease_grant(10)):
                    stall_the_loop(1.0)
                    with pytest.raises(UnavailableError, match=r"this server was too busy .* stalled for 1s"):
                        await request()
        finally:
            own_etcd.resume()
        kv = await etcd.get(f"{key_prefix}k")
    assert kv is not None and kv.value == b"v"


async def test_the_deadline_still_ends_a_request_etcd_never_answers(own_etcd: EmbeddedEtcd, key_prefix: str) -> None:
    async with EtcdClient([own_etcd.client_url], request_timeout=TIMEOUT) as etcd:
        await etcd.put(f"{key_prefix}k", "v")
        own_etcd.pause()
        try:
            with anyio.fail_after(HANG_GUARD):
                for request in (lambda: etcd.get(f"{key_prefix}k"), lambda: etcd.lease_grant(10)):
                    with pytest.raises(UnavailableError, match=r"^etcd unavailable at "):
                        await request()
        finally:
            own_etcd.resume()
