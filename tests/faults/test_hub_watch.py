"""Faults 3 and 4: the hub's watch broken mid-stream, and compacted past while the hub is cut off.

The hub reaches etcd through a TCP proxy that the test cuts; registrations change meanwhile through
another client. A broken stream resumes from the last revision the hub saw; a compacted one makes the
hub list again. Either way each change is applied exactly once: one check loop per live instance,
none for a deleted one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from health_servers import HttpHealthServer
from recovery import Stopwatch
from registry_helpers import active_hub, eventually, monitor_of, register, running_hub, wait_status
from tcp_proxy import tcp_proxy

from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd
from kk_etcd_mcp.registry import InstanceKey, RegistryKeys

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

KEYS = RegistryKeys("kk_service/")


def check_loops(key: InstanceKey) -> int:
    """Running check loops of one instance (the hub names each loop's task after its instance)."""
    return sum(1 for task in asyncio.all_tasks() if task.get_name() == f"check {key.path}" and not task.done())


async def exactly_one_loop_each(live: list[InstanceKey], gone: list[InstanceKey]) -> None:
    await eventually(
        lambda: [check_loops(k) for k in live] == [1] * len(live) and [check_loops(k) for k in gone] == [0] * len(gone),
        "exactly one check loop per live instance and none for a deleted one",
    )


async def _missing(etcd: EtcdClient, key: str) -> bool:
    return await etcd.get(key) is None


@pytest.mark.parametrize("compacted", [False, True], ids=["resumed", "compacted"])
async def test_changes_while_the_hub_is_cut_off_are_applied_exactly_once(
    own_etcd: EmbeddedEtcd, caplog: pytest.LogCaptureFixture, recovery: Any, compacted: bool
) -> None:
    async with (
        HttpHealthServer() as a,
        HttpHealthServer() as b,
        HttpHealthServer() as c,
        tcp_proxy("127.0.0.1", own_etcd.client_port) as proxy,
        EtcdClient([own_etcd.client_url]) as etcd,
        EtcdClient([proxy.url], request_timeout=2) as hub_etcd,
        running_hub(hub_etcd, KEYS, lease_ttl=20) as runner,  # the lease outlives the cut
    ):
        caplog.set_level(logging.INFO, logger="kk_etcd_mcp")
        hub = active_hub(runner)
        key_a = await register(etcd, KEYS, "web", a.addr)
        key_b = await register(etcd, KEYS, "web", b.addr)
        await wait_status(etcd, KEYS, key_a, "passing")
        await wait_status(etcd, KEYS, key_b, "passing")
        await exactly_one_loop_each([key_a, key_b], [])

        proxy.cut()  # the hub's watch (and its writes) break
        key_c = await register(etcd, KEYS, "web", c.addr)
        await etcd.delete(KEYS.registration(key_b))
        await register(etcd, KEYS, "web", a.addr, metadata={"zone": "b"})  # same check: the loop goes on
        if compacted:
            await etcd.compact(await etcd.current_revision())  # the hub's watch cannot resume now
        proxy.restore()
        restored = Stopwatch()

        await wait_status(etcd, KEYS, key_c, "passing")
        await eventually(lambda: _missing(etcd, KEYS.status(key_b)), "the deleted one's status is removed")
        recovery(f"cut restored → changes applied ({'compacted' if compacted else 'resumed'})", restored.elapsed())
        await exactly_one_loop_each([key_a, key_c], [key_b])
        assert set(hub.monitors) == {key_a, key_c}
        assert monitor_of(runner, key_a).registration.metadata == {"zone": "b"}  # type: ignore[union-attr]
        assert runner.hub is hub, "the hub lost its term instead of resuming or relisting"
        relisted = any("listing registrations again" in r.getMessage() for r in caplog.records)
        assert relisted is compacted
