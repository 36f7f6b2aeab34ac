"""A sharded hub's status writes carry its view of the group (``Membership.view``): a hub that has not yet
heard of a newcomer cannot overwrite what the newcomer wrote for the instances that moved to it.

Seen with three hubs starting together: the first, busy with its first checks of all 300 instances,
heard of the other two 300 ms late and kept writing statuses for instances they had already claimed,
so their ``checker`` named the wrong hub (tests/test_hub_shards.py, now and then). Here the late hub is
made by hand: its membership stops following before the newcomer joins.

A write refused that way is put back to be tried again; if its instance moved meanwhile, it must not be
written at all, even with the new view (that write would go through and name the old hub again).
"""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest
from polling import HANG_GUARD

from kk_etcd_mcp.etcd import EtcdClient, LeaseSession
from kk_etcd_mcp.registry.keys import InstanceKey, RegistryKeys
from kk_etcd_mcp.registry.membership import MemberInfo, Membership, this_process
from kk_etcd_mcp.registry.model import HealthStatus
from kk_etcd_mcp.registry.status_writer import BehindTheGroup, StatusWriter
from kk_etcd_mcp.registry.wire import status_from_json

pytestmark = pytest.mark.anyio

INSTANCE = InstanceKey("http", "web", "10.0.0.1:80")


def status(checker: str) -> HealthStatus:
    now = datetime.now(UTC)
    return HealthStatus(status="passing", output="ok", since=now, checked_at=now, checker=checker)


async def follow_once(membership: Membership) -> dict[str, MemberInfo]:
    """The group as the membership sees it after its first listing; then it stops following."""
    seen: dict[str, MemberInfo] = {}
    with anyio.CancelScope() as scope:

        def changed(members: dict[str, MemberInfo]) -> None:
            seen.update(members)
            scope.cancel()

        await membership.follow(changed)
    return seen


async def test_a_hub_behind_the_group_cannot_overwrite_a_newcomers_status(etcd_endpoint: str, key_prefix: str) -> None:
    keys = RegistryKeys(f"{key_prefix}kk_service/")
    async with (
        EtcdClient([etcd_endpoint]) as etcd,
        LeaseSession(etcd, 10) as old_session,
        LeaseSession(etcd, 10) as new_session,
    ):
        old = Membership(etcd, keys, old_session, this_process("old", 1.0))
        await old.join()
        assert set(await follow_once(old)) == {"old"}  # and it hears no more: busy, say

        newcomer = Membership(etcd, keys, new_session, this_process("new", 1.0))
        await newcomer.join()
        await follow_once(newcomer)
        claim = StatusWriter(etcd, keys, newcomer.fence, None, membership=newcomer)
        claim.set(INSTANCE, status("new"))
        await claim.flush()

        moved: set[InstanceKey] = set()
        late = StatusWriter(etcd, keys, old.fence, None, membership=old, owns=lambda key: key not in moved)
        late.set(INSTANCE, status("old"))
        with anyio.fail_after(HANG_GUARD), pytest.raises(BehindTheGroup):  # not LostLeadership: still a member
            await late.flush()
        assert await checker_of(etcd, keys, INSTANCE) == "new"

        # Once it has heard of the newcomer, its writes go through again, but not the refused one: it was
        # put back to be tried again, and its instance moved meanwhile (seen in CI: that write came later).
        await follow_once(old)
        moved.add(INSTANCE)
        other = InstanceKey("http", "web", "10.0.0.2:80")
        late.set(other, status("old"))
        await late.flush()
        assert await checker_of(etcd, keys, other) == "old"
        assert await checker_of(etcd, keys, INSTANCE) == "new"


async def checker_of(etcd: EtcdClient, keys: RegistryKeys, instance: InstanceKey) -> str | None:
    kv = await etcd.get(keys.status(instance))
    stored = status_from_json(kv.value) if kv is not None else None
    return stored.checker if stored is not None else None
