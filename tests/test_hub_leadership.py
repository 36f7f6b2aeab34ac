"""Hub leadership: one checker per registry root, in-process and as ``kk-etcd-mcp hub`` processes.

A leader that stops revokes its lease (a standby takes over at once); one killed with SIGKILL is
replaced once its lease expires, and the new leader starts from the statuses in etcd, so a passing
instance stays passing without a false transition.
"""

from __future__ import annotations

import pytest
from health_servers import HttpHealthServer
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
        running_hubs(etcd, keys, 2, lease_ttl=ttl, mode="leader") as runners,
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
