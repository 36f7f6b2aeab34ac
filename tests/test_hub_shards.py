"""Sharded health checking with real ``kk-etcd-mcp hub`` processes, a real etcd and real HTTP targets.

One local HTTP server is every target: instance ``i`` is checked at ``/i/<i>``, and the server counts the
requests per path, so the test sees exactly how often each instance is checked, and by how many hubs.
Statuses in etcd say which hub checks each instance (``checker``), which must match the rendezvous owner
over the live members.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import pytest
from health_servers import HttpHealthServer
from hub_processes import HubProcess, HubProcesses, hub_processes
from polling import eventually
from registry_helpers import registry_keys

from kk_etcd_mcp.etcd import EmbeddedEtcd, EtcdClient, prefix_end
from kk_etcd_mcp.registry import CheckOptions, InstanceKey, RegistryKeys
from kk_etcd_mcp.registry.membership import MemberInfo, parse_member
from kk_etcd_mcp.registry.model import HealthStatus
from kk_etcd_mcp.registry.rendezvous import owner_of
from kk_etcd_mcp.registry.service import build_registration
from kk_etcd_mcp.registry.store import RegistryStore

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TTL = 3
INTERVAL = 1
WINDOW = 10.0  # seconds over which checks are counted


def path_of(i: int) -> str:
    return f"/i/{i}"


async def register_many(
    etcd: EtcdClient, keys: RegistryKeys, server: HttpHealthServer, count: int
) -> list[InstanceKey]:
    store = RegistryStore(etcd, keys)
    found = []
    for i in range(count):
        check = CheckOptions(addr=f"{server.url}{path_of(i)}", timeout=1, interval=INTERVAL)
        registration = build_registration("web", f"inst-{i}.test:80", "http", check, None, 1)
        await store.put(registration)
        found.append(InstanceKey("http", "web", registration.addr))
    return found


def index_of(key: InstanceKey) -> int:
    return int(key.addr.split(".")[0].removeprefix("inst-"))


async def members(etcd: EtcdClient, keys: RegistryKeys) -> dict[str, tuple[MemberInfo, int]]:
    """Live members: hub id -> (its member document, its key's create revision)."""
    page = await etcd.range(keys.members, prefix_end(keys.members))
    return {info.hub_id: (info, kv.create_revision) for kv in page.kvs if (info := parse_member(kv.value))}


async def statuses(etcd: EtcdClient, keys: RegistryKeys) -> dict[InstanceKey, HealthStatus]:
    found = await RegistryStore(etcd, keys).statuses()
    return {key: status for key, status in found.items() if status is not None}


class Unsettled(str):
    """Why the group has not settled yet: falsy, so ``eventually`` goes on and shows it at the end."""

    def __bool__(self) -> bool:
        return False


async def settled(
    etcd: EtcdClient,
    keys: RegistryKeys,
    instances: list[InstanceKey],
    hubs: int,
    expected: dict[int, str] | None = None,
) -> dict[InstanceKey, HealthStatus] | Unsettled:
    """The statuses, once ``hubs`` members are live and every instance's status names its rendezvous owner
    as checker and is as ``expected`` (index -> status; passing when not given)."""
    group = await members(etcd, keys)
    if len(group) != hubs:
        return Unsettled(f"{len(group)} members: {sorted(group)}")
    weights = {hub_id: info.weight for hub_id, (info, _) in group.items()}
    found = await statuses(etcd, keys)
    wrong = []
    for key in instances:
        status = found.get(key)
        wanted = (expected or {}).get(index_of(key), "passing")
        owner = owner_of(key.path, weights)
        if status is None or status.status != wanted or status.checker != owner:
            seen = "no status" if status is None else f"{status.status} by {status.checker}"
            wrong.append(f"{key.addr}: {seen}, wanted {wanted} by {owner}")
    if wrong:
        return Unsettled(f"{len(wrong)} not settled, first {wrong[:5]}")
    return found


async def checks_in_window(server: HttpHealthServer, instances: Iterable[InstanceKey]) -> dict[int, int]:
    before = Counter(server.by_path)
    await anyio.sleep(WINDOW)
    after = Counter(server.by_path)
    return {index_of(key): after[path_of(index_of(key))] - before[path_of(index_of(key))] for key in instances}


def shares(found: dict[InstanceKey, HealthStatus]) -> Counter[str]:
    return Counter(status.checker for status in found.values())


def unchanged(before: dict[InstanceKey, HealthStatus], after: dict[InstanceKey, HealthStatus]) -> list[str]:
    """Instances whose status or since changed (a false transition, when their target stayed up)."""
    return [
        key.path
        for key, status in before.items()
        if (after.get(key) is None or (after[key].status, after[key].since) != (status.status, status.since))
    ]


async def hub_of(etcd: EtcdClient, keys: RegistryKeys, hub: HubProcess) -> str:
    async def found() -> str | None:
        return next((hub_id for hub_id, (info, _) in (await members(etcd, keys)).items() if info.pid == hub.pid), None)

    result: str = await eventually(found, f"hub pid {hub.pid} is a member", within=30)
    return result


async def test_three_hubs_share_the_checking_and_a_fourth_takes_a_quarter_and_a_killed_ones_share_moves(
    own_etcd: EmbeddedEtcd, key_prefix: str, tmp_path: Path, recovery: Any
) -> None:
    keys = registry_keys(key_prefix)
    etcd_endpoint = own_etcd.client_url  # killed hubs' leases expire later: not on the shared etcd
    async with HttpHealthServer() as server, EtcdClient([etcd_endpoint]) as etcd:
        instances = await register_many(etcd, keys, server, 300)
        with hub_processes(etcd_endpoint, keys.root, 3, tmp_path, hub_lease_ttl=str(TTL)) as hubs:
            try:
                await _share_join_and_kill(etcd, keys, server, instances, hubs, recovery)
            except BaseException as exc:
                exc.add_note(hubs.logs())
                raise


async def _share_join_and_kill(
    etcd: EtcdClient,
    keys: RegistryKeys,
    server: HttpHealthServer,
    instances: list[InstanceKey],
    hubs: HubProcesses,
    recovery: Any,
) -> None:
    # Steady state: three members, each instance checked by its owner alone, once a second.
    before = await eventually(lambda: settled(etcd, keys, instances, 3), "three hubs check their shares", within=60)
    counts = await checks_in_window(server, instances)
    assert all(8 <= n <= 12 for n in counts.values()), sorted(Counter(counts.values()).items())
    owned = shares(before)
    assert len(owned) == 3 and all(60 <= n <= 140 for n in owned.values()), owned
    metrics = await hubs.started[0].metrics()
    assert metrics["kk_etcd_mcp_hub_members{}"] == 3
    assert 60 <= metrics["kk_etcd_mcp_owned_instances{}"] <= 140
    assert metrics["kk_etcd_mcp_checks_total{result=passing,type=http}"] > 0

    # A fourth hub: about a quarter moves to it; after one interval nothing is checked twice; nothing flips.
    fourth = hubs.start()
    after_join = await eventually(lambda: settled(etcd, keys, instances, 4), "four hubs check their shares", within=60)
    moved = [key for key in instances if after_join[key].checker != before[key].checker]
    newcomer = await hub_of(etcd, keys, fourth)
    assert {after_join[key].checker for key in moved} == {newcomer}, "only instances to the newcomer move"
    assert 40 <= len(moved) <= 113, f"{len(moved)} of 300 moved (a quarter is 75)"
    await anyio.sleep(INTERVAL)
    counts = await checks_in_window(server, instances)
    assert all(8 <= n <= 12 for n in counts.values()), sorted(Counter(counts.values()).items())
    assert unchanged(before, after_join) == [], "a false transition at the hand-over"

    # SIGKILL one of the first three: its instances are checked again by the others, nothing flips.
    victim = hubs.started[1]
    victim_id = await hub_of(etcd, keys, victim)
    orphans = [key for key in instances if after_join[key].checker == victim_id]
    last_seen = Counter(server.by_path)
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(timeout=10)

    def orphans_checked_again() -> bool:
        return all(server.by_path[path_of(index_of(k))] > last_seen[path_of(index_of(k))] + 1 for k in orphans)

    # (its lease expires within TTL, the others start its instances within one interval)
    await eventually(orphans_checked_again, "the killed hub's instances are checked again", within=TTL + INTERVAL + 10)
    after_kill = await eventually(lambda: settled(etcd, keys, instances, 3), "three hubs again", within=30)
    assert victim_id not in shares(after_kill)
    assert unchanged(before, after_kill) == [], "a false transition after the kill"
    recovery("sharded: instances moved on join", len(moved), unit="of 300")


async def test_a_paused_hub_loses_its_share_its_late_writes_are_fenced_and_it_rejoins(
    own_etcd: EmbeddedEtcd, key_prefix: str, tmp_path: Path
) -> None:
    keys = registry_keys(key_prefix)
    etcd_endpoint = own_etcd.client_url  # killed hubs' leases expire later: not on the shared etcd
    async with HttpHealthServer() as server, EtcdClient([etcd_endpoint]) as etcd:
        instances = await register_many(etcd, keys, server, 60)
        with hub_processes(etcd_endpoint, keys.root, 3, tmp_path, hub_lease_ttl=str(TTL)) as hubs:
            try:
                await _pause_and_resume(etcd, keys, server, instances, hubs)
            except BaseException as exc:
                exc.add_note(hubs.logs())
                raise


async def _pause_and_resume(
    etcd: EtcdClient, keys: RegistryKeys, server: HttpHealthServer, instances: list[InstanceKey], hubs: HubProcesses
) -> None:
    before = await eventually(lambda: settled(etcd, keys, instances, 3), "three hubs check their shares", within=60)
    paused = hubs.started[0]
    paused_id = await hub_of(etcd, keys, paused)
    _, old_revision = (await members(etcd, keys))[paused_id]
    its_share = [key for key in instances if before[key].checker == paused_id]
    # Half of its instances fail while it is paused: the others must find that out, not it.
    failing = {index_of(key) for key in its_share[::2]}

    paused.process.send_signal(signal.SIGSTOP)
    try:
        await eventually(lambda: _left(etcd, keys, paused_id), "the paused hub's lease expires", within=TTL + 10)
        server.failing = {path_of(i) for i in failing}
        expected = dict.fromkeys(failing, "critical")
        taken = await eventually(
            lambda: settled(etcd, keys, instances, 2, expected), "the others check its share", within=30
        )
        assert paused_id not in shares(taken)
    finally:
        paused.process.send_signal(signal.SIGCONT)

    # It rejoins under a new member key and gets its share back; the statuses stay what the others found.
    async def rejoined() -> bool:
        group = await members(etcd, keys)
        return paused_id in group and group[paused_id][1] > old_revision

    await eventually(rejoined, "the paused hub joins again with a new member key", within=30)
    after = await eventually(
        lambda: settled(etcd, keys, instances, 3, dict.fromkeys(failing, "critical")), "three hubs again", within=30
    )
    assert paused_id in shares(after)
    up = {key: status for key, status in before.items() if index_of(key) not in failing}
    assert unchanged(up, after) == [], "an instance whose target stayed up changed status or since"
    log = paused.log_text()
    lost = [line for line in log.splitlines() if "joining the hub group again" in line]
    assert len(lost) == 1, log[-3000:]
    metrics = await paused.metrics()
    refused = metrics["kk_etcd_mcp_fenced_write_refusals_total{}"]
    # Whether it tried to write before it learned of its lost lease depends on which answer came first;
    # when it did, the fence refused it, and the term ended with that one line.
    assert refused == 0 or "etcd refused" in lost[0], (refused, lost)


async def _left(etcd: EtcdClient, keys: RegistryKeys, hub_id: str) -> bool:
    return hub_id not in await members(etcd, keys)
