"""Fault 5: the leading ``kk-etcd-mcp hub`` process SIGKILLed while a standby process waits.

The standby takes over once the dead leader's lease expires (lease TTL, then its first checks within one
interval), and it starts from the statuses in etcd: no instance flips, passing or critical, and no
``since`` changes. The survivor then stops on SIGTERM, resigning: no leader key is left behind.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from health_servers import HttpHealthServer
from hub_processes import hub_processes
from recovery import Stopwatch
from registry_helpers import eventually, leader_keys, register, registry_keys, wait_status

from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.etcd.election import current_leader
from kk_etcd_mcp.registry import RegistryKeys
from kk_etcd_mcp.registry.store import RegistryStore

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TTL = 3


async def _leader_pid(etcd: EtcdClient, keys: RegistryKeys) -> int | None:
    found = await current_leader(etcd, keys.leader)
    if found is None:
        return None
    return int(found.value.decode().split(":")[1])  # "<hostname>:<pid>:<suffix>"


async def test_leader_sigkilled_standby_takes_over_without_false_transitions(
    etcd_endpoint: str, key_prefix: str, tmp_path: Path, recovery: Any
) -> None:
    keys = registry_keys(key_prefix)
    async with (
        HttpHealthServer() as up1,
        HttpHealthServer() as up2,
        HttpHealthServer() as down,
        EtcdClient([etcd_endpoint]) as etcd,
    ):
        down.status = 500
        # leader mode: one hub checks, the other stands by (sharded mode has its own tests: test_hub_shards.py)
        with hub_processes(etcd_endpoint, keys.root, 2, tmp_path, hub_lease_ttl=str(TTL), hub_mode="leader") as hubs:
            processes = [hub.process for hub in hubs.started]
            try:
                await _kill_the_leader(etcd, keys, (up1, up2, down), processes, recovery)
            except BaseException as exc:
                exc.add_note(hubs.logs())
                raise


async def _kill_the_leader(
    etcd: EtcdClient,
    keys: RegistryKeys,
    servers: tuple[HttpHealthServer, ...],
    processes: list[subprocess.Popen[bytes]],
    recovery: Any,
) -> None:
    by_pid = {p.pid: p for p in processes}
    await eventually(lambda: _count_candidates(etcd, keys, 2), "both hub processes campaign", within=30)
    leader = by_pid.pop(await _leader_pid(etcd, keys))  # type: ignore[arg-type]
    (survivor,) = by_pid.values()

    instances = [await register(etcd, keys, "web", s.addr) for s in servers]
    for key, status in zip(instances, ("passing", "passing", "critical"), strict=True):
        await wait_status(etcd, keys, key, status)
    before = await RegistryStore(etcd, keys).statuses()
    assert {s.checker.split(":")[1] for s in before.values() if s} == {str(leader.pid)}

    leader.send_signal(signal.SIGKILL)
    leader.wait(timeout=10)
    killed = Stopwatch()
    await eventually(lambda: _is_leader(etcd, keys, survivor.pid), "the survivor leads", within=TTL + 12)
    recovery(f"leader SIGKILLed → standby leads (lease TTL {TTL} s)", killed.elapsed())
    counts = [s.requests for s in servers]
    await eventually(
        lambda: all(s.requests > n for s, n in zip(servers, counts, strict=True)), "the new leader checks each"
    )
    recovery("leader SIGKILLed → new leader has checked every instance (interval 1 s)", killed.elapsed())
    counts = [s.requests for s in servers]
    await eventually(lambda: all(s.requests >= n + 3 for s, n in zip(servers, counts, strict=True)), "three more")
    # No false transition at takeover: every status, passing or critical, stands as it was, same since.
    assert await RegistryStore(etcd, keys).statuses() == before
    assert survivor.poll() is None

    survivor.send_signal(signal.SIGTERM)
    await eventually(lambda: survivor.poll() is not None, "the hub exits on SIGTERM")
    assert survivor.returncode == 0
    assert await leader_keys(etcd, keys) == [], "the hub left its leader key behind"


async def _count_candidates(etcd: EtcdClient, keys: RegistryKeys, expected: int) -> bool:
    return len(await leader_keys(etcd, keys)) == expected


async def _is_leader(etcd: EtcdClient, keys: RegistryKeys, pid: int) -> bool:
    return await _leader_pid(etcd, keys) == pid
