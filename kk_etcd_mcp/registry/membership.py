"""The hub group: each hub's member key on its own lease, and every hub's view of the live members.

A hub joins by writing ``<root>hub/members/<hub_id>`` on its lease session; it leaves when it revokes the
lease, or when the lease expires because the process died or stalled. Every member follows the members
prefix (list, then watch) and hands the live set to ``rendezvous.Ownership``, so all members agree on
who checks what.

The member key's create revision is the hub's proof of membership: ``fence()`` compares on it, and every
write a member makes for the instances it owns carries that compare. A hub whose lease expired while it
was paused or cut off finds its writes refused instead of overwriting the new owner's results. The key is
deleted before it is created again, so a new term's key never shares a create revision with an old one.
A member's status writes also carry ``view()``: no member key newer than the ones it has seen. A hub
busy enough to hear of a newcomer late then cannot overwrite the statuses the newcomer just claimed for
the instances that moved to it; its write is refused, and it writes again once it has caught up.

The member value (``MemberInfo``) also carries the figures ``hub_status`` shows (owned instances,
checks per second, p99 lateness), refreshed every ``REPORT_EVERY`` seconds under the same fence.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from contextlib import aclosing
from datetime import UTC, datetime

from pydantic import BaseModel, Field, ValidationError

from .. import __version__
from ..etcd import Compare, Delete, EtcdClient, LeaseSession, Put, Snapshot, list_and_watch, prefix_end
from .keys import RegistryKeys

log = logging.getLogger(__name__)

REPORT_EVERY = 5.0  # seconds between refreshes of a member's figures


class MembershipLost(Exception):
    """This hub's member key is gone (its lease expired, or it was deleted): it must join again."""


class MemberInfo(BaseModel):
    """What a member key holds (JSON)."""

    hub_id: str
    host: str = ""
    pid: int = 0
    started_at: datetime | None = None
    version: str = ""
    weight: float = Field(default=1.0, gt=0, description="Capacity weight: a hub of weight 2 checks twice the share.")
    owned: int = Field(default=0, description="Instances it checks (as of reported_at).")
    checks_per_second: float = Field(default=0.0, description="Over the last minute.")
    lateness_p99_ms: float = Field(default=0.0, description="99th percentile of how late checks started, last minute.")
    reported_at: datetime | None = None


def this_process(hub_id: str, weight: float) -> MemberInfo:
    return MemberInfo(
        hub_id=hub_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=datetime.now(UTC),
        version=__version__,
        weight=weight,
    )


def parse_member(raw: bytes) -> MemberInfo | None:
    try:
        return MemberInfo.model_validate_json(raw)
    except ValidationError:
        return None


class Membership:
    """This hub's membership for one lease session; ``members`` is the live group as last seen."""

    def __init__(self, etcd: EtcdClient, keys: RegistryKeys, session: LeaseSession, info: MemberInfo) -> None:
        self.etcd = etcd
        self.keys = keys
        self.session = session
        self.info = info
        self.key = keys.member(info.hub_id).encode()
        self.create_revision = 0
        self.members: dict[str, MemberInfo] = {}
        self._joined: dict[str, int] = {}  # each live member's key's create revision

    def view(self) -> Compare:
        """Holds while no hub joined that this hub has not seen yet: with ``fence()`` in the writes for the
        instances it owns, so a hub that has not heard of a newcomer cannot overwrite what the newcomer
        wrote for the instances it took (a join moves instances only to the newcomer)."""
        newest = max(self._joined.values(), default=0)
        prefix = self.keys.members.encode()
        return Compare(prefix, "create", "<", newest + 1, range_end=prefix_end(prefix))

    async def fence_holds(self) -> bool:
        """Whether this hub's member key is still the one it created (a refused write asks why)."""
        kv = await self.etcd.get(self.key)
        return kv is not None and kv.create_revision == self.create_revision

    async def join(self) -> None:
        await self.etcd.txn([], [Delete(self.key)])  # a key of an earlier term of ours: never reuse its revision
        result = await self.etcd.txn(
            [Compare(self.key, "create", "==", 0)],
            [Put(self.key, self.info.model_dump_json().encode(), lease=self.session.lease_id)],
        )
        if not result.succeeded:
            raise MembershipLost(f"hub {self.info.hub_id}: another process wrote its member key while it joined")
        self.create_revision = result.revision

    def fence(self) -> Compare:
        """Holds while this hub is a member of this term: put it in every write for the instances it owns."""
        return Compare(self.key, "create", "==", self.create_revision)

    def weights(self) -> dict[str, float]:
        return {hub_id: info.weight for hub_id, info in self.members.items()}

    async def report(self, info: MemberInfo) -> None:
        """Refresh the figures in the member key (fenced: a hub that is no member any more learns it here)."""
        self.info = info
        value = info.model_dump_json().encode()
        result = await self.etcd.txn([self.fence()], [Put(self.key, value, lease=self.session.lease_id)])
        if not result.succeeded:
            raise MembershipLost(f"hub {info.hub_id} is no member any more (its member key is gone)")

    async def follow(self, on_change: Callable[[dict[str, MemberInfo]], None]) -> None:
        """Follow the members; call ``on_change`` with the live set after every change. Raises
        ``MembershipLost`` once this hub's own key is gone."""
        updates = list_and_watch(self.etcd, self.keys.members, prefix=True)
        async with aclosing(updates):
            async for update in updates:
                if isinstance(update, Snapshot):
                    self.members, self._joined = {}, {}
                    for kv in update.kvs:
                        self._apply(kv.key, kv.value, kv.create_revision)
                else:
                    for event in update.events:
                        value = event.kv.value if event.type == "put" else None
                        self._apply(event.kv.key, value, event.kv.create_revision)
                if self.info.hub_id not in self.members:
                    raise MembershipLost(f"hub {self.info.hub_id}: its member key is gone (its lease expired?)")
                on_change(dict(self.members))

    def _apply(self, key: bytes, value: bytes | None, create_revision: int) -> None:
        hub_id = key.decode(errors="replace").removeprefix(self.keys.members)
        self._joined[hub_id] = create_revision
        if value is None:
            self.members.pop(hub_id, None)
            self._joined.pop(hub_id, None)
            return
        info = parse_member(value)
        if info is None or info.hub_id != hub_id:
            log.warning("ignoring member key %s: not a member document of this version", key.decode(errors="replace"))
            self.members.pop(hub_id, None)
            return  # (its key still counts in view(): it exists in etcd)
        self.members[hub_id] = info
