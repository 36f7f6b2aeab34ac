"""Sharded mode in-process: the membership fence, rejoining, the alive document from every share,
``checked_by``, and ``hub_status``. Real etcd, real HTTP targets; the hubs run in this process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from health_servers import HttpHealthServer
from polling import eventually
from prometheus_client import REGISTRY
from registry_helpers import registry_keys

from kk_etcd_mcp.etcd import EtcdClient, LeaseSession
from kk_etcd_mcp.registry import CheckOptions, HubRunner, InstanceKey, RegistryKeys, RegistryService
from kk_etcd_mcp.registry.checkers import Prober
from kk_etcd_mcp.registry.live_status import HubLiveStatus
from kk_etcd_mcp.registry.membership import Membership, parse_member, this_process
from kk_etcd_mcp.registry.model import HealthStatus
from kk_etcd_mcp.registry.service import build_registration
from kk_etcd_mcp.registry.status_writer import LostLeadership, StatusWriter
from kk_etcd_mcp.registry.store import RegistryStore
from kk_etcd_mcp.registry.wire import status_from_json, status_to_json

from registry_helpers import running_hubs  # isort: skip

pytestmark = pytest.mark.anyio

REFUSALS = "kk_etcd_mcp_fenced_write_refusals_total"


def status(value: str, checker: str) -> HealthStatus:
    now = datetime.now(UTC)
    return HealthStatus(status=value, output="", since=now, checked_at=now, checker=checker)  # type: ignore[arg-type]


async def read_status(etcd: EtcdClient, keys: RegistryKeys, key: InstanceKey) -> HealthStatus | None:
    kv = await etcd.get(keys.status(key))
    return status_from_json(kv.value) if kv is not None else None


async def test_a_hub_whose_lease_expired_cannot_overwrite_the_new_owners_status(
    etcd_endpoint: str, key_prefix: str
) -> None:
    keys = registry_keys(key_prefix)
    key = InstanceKey("http", "web", "10.0.0.1:80")
    async with EtcdClient([etcd_endpoint]) as etcd, LeaseSession(etcd, 60) as session:
        membership = Membership(etcd, keys, session, this_process("stale-hub", 1.0))
        await membership.join()
        writer = StatusWriter(etcd, keys, membership.fence, None, lost="no member any more")
        writer.set(key, status("passing", "stale-hub"))
        await writer.flush()
        assert (await read_status(etcd, keys, key)).checker == "stale-hub"  # type: ignore[union-attr]

        # Its lease goes while it does not know (what a pause past the TTL does); a new owner writes.
        await etcd.lease_revoke(session.lease_id)
        session.orphan()
        await etcd.put(keys.status(key), status_to_json(status("critical", "new-owner")))
        refused = REGISTRY.get_sample_value(REFUSALS) or 0.0

        writer.set(key, status("passing", "stale-hub"))
        with pytest.raises(LostLeadership, match="no member any more: etcd refused 1 fenced write"):
            await writer.flush()
        found = await read_status(etcd, keys, key)
        assert found is not None and (found.status, found.checker) == ("critical", "new-owner")
        assert REGISTRY.get_sample_value(REFUSALS) == refused + 1


async def test_a_membership_key_of_an_earlier_term_is_never_reused(etcd_endpoint: str, key_prefix: str) -> None:
    keys = registry_keys(key_prefix)
    async with EtcdClient([etcd_endpoint]) as etcd:
        async with LeaseSession(etcd, 60) as first:
            old = Membership(etcd, keys, first, this_process("hub-a", 1.0))
            await old.join()
            first.orphan()  # left behind, as by a term that ended while etcd was away
        async with LeaseSession(etcd, 60) as second:
            new = Membership(etcd, keys, second, this_process("hub-a", 1.0))
            await new.join()
            assert new.create_revision > old.create_revision
            result = await etcd.txn([old.fence()], [])
            assert not result.succeeded, "the old term's fence must not hold"
            assert (await etcd.txn([new.fence()], [])).succeeded


@asynccontextmanager
async def targets(etcd: EtcdClient, keys: RegistryKeys, count: int) -> AsyncIterator[list[InstanceKey]]:
    async with HttpHealthServer() as server:
        store = RegistryStore(etcd, keys)
        found = []
        for i in range(count):
            options = CheckOptions(addr=f"{server.url}/i/{i}", timeout=1, interval=1)
            registration = build_registration("web", f"10.0.0.{i + 1}:80", "http", options, None, 1)
            await store.put(registration)
            found.append(InstanceKey("http", "web", registration.addr))
        yield found


def sharded(runners: list[HubRunner]) -> bool:
    return all(r.hub is not None and len(r.members) == len(runners) for r in runners)


async def test_two_hubs_split_the_instances_and_the_duty_holder_writes_every_alive_one(
    etcd_endpoint: str, key_prefix: str
) -> None:
    keys = registry_keys(key_prefix)
    async with (
        EtcdClient([etcd_endpoint]) as etcd,
        targets(etcd, keys, 12) as instances,
        running_hubs(etcd, keys, 2, lease_ttl=5, mode="sharded") as runners,
        Prober() as prober,
    ):
        await eventually(lambda: sharded(runners), "both hubs see a group of two")

        async def all_alive() -> dict[str, object] | None:
            kv = await etcd.get(keys.alive)
            document = json.loads(kv.value) if kv is not None else {}
            return document if len(document.get("Http-web", [])) == len(instances) else None

        document = await eventually(all_alive, "every instance is in the alive document")
        assert sorted(entry["ServiceAddr"] for entry in document["Http-web"]) == sorted(k.addr for k in instances)  # type: ignore[index]

        # Each instance is checked by exactly one hub, and both hubs check some.
        owned = [set(r.hub.monitors) for r in runners if r.hub is not None]
        assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == set(instances)
        assert owned[0] and owned[1]

        # checked_by: in etcd, and in what the service shows (live from this process's hub where it checks).
        service = RegistryService(etcd, keys, prober, HubLiveStatus(runners[0]))
        listing = await eventually(
            lambda: _all_checked(service, len(instances)), "every instance names the hub that checks it"
        )
        by_hub = {i.addr: i.checked_by for i in listing}
        for runner, keys_owned in zip(runners, owned, strict=True):
            assert {by_hub[k.addr] for k in keys_owned} == {runner.hub_id}

        # hub_status: both members, their shares, exactly one duty holder.
        async def reported() -> object:
            found = await service.hub_status()
            return found if sum(m.owned for m in found.members) == len(instances) else None

        found = await eventually(reported, "both members report their shares", within=20)
        assert found.mode == "sharded" and found.count == 2 and found.instances == len(instances)  # type: ignore[attr-defined]
        assert sorted(m.hub_id for m in found.members) == sorted(r.hub_id for r in runners)  # type: ignore[attr-defined]
        holders = [m.hub_id for m in found.members if m.duty_holder]  # type: ignore[attr-defined]
        assert holders == [found.duty_holder] and [r.hub_id for r in runners if r.holds_duties] == holders  # type: ignore[attr-defined]
        assert all(m.checks_per_second > 0 for m in found.members)  # type: ignore[attr-defined]


async def _all_checked(service: RegistryService, count: int) -> list[object] | None:
    listing = await service.list_instances("web")
    instances = listing.instances
    return instances if len(instances) == count and all(i.checked_by for i in instances) else None  # type: ignore[return-value]


async def test_a_hub_whose_member_key_goes_joins_again_and_takes_its_share_back(
    etcd_endpoint: str, key_prefix: str
) -> None:
    keys = registry_keys(key_prefix)
    async with (
        EtcdClient([etcd_endpoint]) as etcd,
        targets(etcd, keys, 8),
        running_hubs(etcd, keys, 2, lease_ttl=30, mode="sharded") as runners,
    ):
        await eventually(lambda: sharded(runners), "both hubs see a group of two")
        victim = runners[0]
        key = keys.member(victim.hub_id)
        before = await etcd.get(key)
        assert before is not None and parse_member(before.value) is not None
        await etcd.delete(key)  # as when its lease expired

        async def rejoined() -> bool:
            now = await etcd.get(key)
            return now is not None and now.create_revision > before.create_revision

        await eventually(rejoined, "it joins again under a new member key")
        await eventually(lambda: sharded(runners), "both hubs check again")
