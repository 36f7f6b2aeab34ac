"""Hub leadership: one checker per registry root, in-process and as ``kk-etcd-mcp hub`` processes.

A leader that stops revokes its lease (a standby takes over at once); one killed with SIGKILL is
replaced once its lease expires, and the new leader starts from the statuses in etcd, so a passing
instance stays passing without a false transition.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

import pytest
from health_servers import HttpHealthServer
from mcp_helpers import server_env, stop_process
from registry_helpers import (
    active_hub,
    eventually,
    leader_keys,
    monitor_of,
    register,
    registry_keys,
    running_hubs,
    status_of,
    wait_status,
)

from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.etcd.election import current_leader
from kk_etcd_mcp.registry import HubRunner, RegistryKeys
from kk_etcd_mcp.registry.store import RegistryStore

pytestmark = pytest.mark.anyio


def leaders(runners: list[HubRunner]) -> list[HubRunner]:
    return [r for r in runners if r.hub is not None]


async def test_two_hubs_only_the_leader_checks_and_a_stopped_leader_hands_over_at_once(
    etcd_endpoint: str, key_prefix: str
) -> None:
    keys = registry_keys(key_prefix)
    # A long TTL: a takeover well within it proves the stopped leader revoked its lease.
    ttl = 60
    async with (
        HttpHealthServer() as server,
        EtcdClient([etcd_endpoint]) as etcd,
        running_hubs(etcd, keys, 2, lease_ttl=ttl) as runners,
    ):
        await eventually(lambda: _candidates(etcd, keys, 2), "both hubs campaign")
        (leader,) = await eventually(lambda: leaders(runners), "a hub leads")
        (standby,) = [r for r in runners if r is not leader]
        found = await current_leader(etcd, keys.leader)
        assert found is not None and found.value.decode() == leader.hub_id

        key = await register(etcd, keys, "web", server.addr)
        passing = await wait_status(etcd, keys, key, "passing")
        assert passing.checker == leader.hub_id
        start = server.requests

        def three_checks_by_one_hub() -> bool:
            assert leaders(runners) == [leader], "the standby leads too"
            return server.requests >= start + 3

        await eventually(three_checks_by_one_hub, "three more checks")
        statuses = await RegistryStore(etcd, keys).statuses()
        assert [s.checker for s in statuses.values()] == [leader.hub_id]

        leader_key = await current_leader(etcd, keys.leader)
        assert leader_key is not None
        leader.scope.cancel()  # type: ignore[attr-defined]
        await eventually(lambda: standby.hub is not None, "the standby takes over", within=ttl / 3)
        assert leader.hub is None
        assert (await etcd.get(leader_key.key)) is None, "the stopped leader's key is still there"
        found = await current_leader(etcd, keys.leader)
        assert found is not None and found.value.decode() == standby.hub_id

        # The new leader checks, starting from the stored status: no false transition.
        await eventually(lambda: monitor_of(standby, key) is not None, "the new leader monitors the instance")
        new_hub = active_hub(standby)
        checks = new_hub.stats.checks
        await eventually(lambda: new_hub.stats.checks >= checks + 2, "the new leader checks")
        monitor = monitor_of(standby, key)
        assert monitor is not None and monitor.state.status == "passing"
        assert (await status_of(etcd, keys, key)) == passing


async def _candidates(etcd: EtcdClient, keys: RegistryKeys, expected: int) -> bool:
    return len(await leader_keys(etcd, keys)) == expected


@contextmanager
def hub_processes(
    endpoint: str, keys: RegistryKeys, count: int, logs: Path, lease_ttl: int
) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = server_env(endpoint, registry_prefix=keys.root, hub_lease_ttl=str(lease_ttl), log_level="INFO")
    with ExitStack() as stack:
        processes: list[subprocess.Popen[bytes]] = []
        for i in range(count):
            log: IO[bytes] = stack.enter_context((logs / f"hub-{i}.log").open("wb"))
            process = subprocess.Popen([sys.executable, "-m", "kk_etcd_mcp", "hub"], env=env, stderr=log)
            stack.callback(_reap, process)
            processes.append(process)
        yield processes


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        stop_process(process)


def _logs(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log")))


async def _leader_pid(etcd: EtcdClient, keys: RegistryKeys) -> int | None:
    found = await current_leader(etcd, keys.leader)
    if found is None:
        return None
    return int(found.value.decode().split(":")[1])  # "<hostname>:<pid>:<suffix>"


@pytest.mark.slow
async def test_hub_processes_sigkill_then_sigterm(etcd_endpoint: str, key_prefix: str, tmp_path: Path) -> None:
    keys = registry_keys(key_prefix)
    ttl = 3
    async with HttpHealthServer() as server, EtcdClient([etcd_endpoint]) as etcd:
        with hub_processes(etcd_endpoint, keys, 2, tmp_path, ttl) as processes:
            try:
                await _sigkill_then_sigterm(etcd, keys, server, processes, ttl)
            except BaseException as exc:
                exc.add_note(_logs(tmp_path))
                raise


async def _sigkill_then_sigterm(
    etcd: EtcdClient,
    keys: RegistryKeys,
    server: HttpHealthServer,
    processes: list[subprocess.Popen[bytes]],
    ttl: int,
) -> None:
    by_pid = {p.pid: p for p in processes}
    await eventually(lambda: _candidates(etcd, keys, 2), "both hub processes campaign", within=30)
    leader_pid = await _leader_pid(etcd, keys)
    assert leader_pid in by_pid
    leader = by_pid.pop(leader_pid)
    (survivor,) = by_pid.values()

    key = await register(etcd, keys, "web", server.addr)
    passing = await wait_status(etcd, keys, key, "passing")
    assert passing.checker.split(":")[1] == str(leader.pid)

    leader.send_signal(signal.SIGKILL)
    leader.wait(timeout=10)
    await eventually(
        lambda: _is_leader(etcd, keys, survivor.pid), "the survivor takes over within the lease TTL", within=ttl + 12
    )
    start = server.requests
    await eventually(lambda: server.requests >= start + 3, "the new leader checks")
    # No false transition: the status written by the killed leader still stands, same since.
    after = await status_of(etcd, keys, key)
    assert after == passing
    assert survivor.poll() is None

    survivor.send_signal(signal.SIGTERM)
    await eventually(lambda: survivor.poll() is not None, "the hub exits on SIGTERM")
    assert survivor.returncode == 0
    assert await leader_keys(etcd, keys) == [], "the hub left its leader key behind"


async def _is_leader(etcd: EtcdClient, keys: RegistryKeys, pid: int) -> bool:
    return await _leader_pid(etcd, keys) == pid
