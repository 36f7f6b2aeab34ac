"""HubRunner: run one hub, in sharded mode (the default) or leader mode.

Sharded mode: each term joins the hub group (``membership.py``) on a lease session, and the hub checks
the instances it owns (``rendezvous.py``); its writes are fenced by its member key. On the same lease it
campaigns at ``<root>hub/leader``: the leader is the duty holder, which also writes the alive document
(``alive_duty.py``). A term ends when the lease is lost or a fenced write is refused; the next one joins
again with a new member key.

Leader mode: only the leader checks and writes statuses (its writes are fenced by its election key).
A leader that stops revokes its lease, so a standby takes over at once; one that dies is replaced when
its lease expires (``lease_ttl``). The new leader starts from the statuses in etcd, not from ``critical``.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Literal
from uuid import uuid4

import anyio

from .. import metrics
from ..backoff import Backoff
from ..errors import KkEtcdError, leaf_exceptions
from ..etcd import Election, EtcdClient, LeaseSession
from .alive_duty import AliveDuty
from .checkers import Prober
from .hub import Hub, Transition
from .keys import RegistryKeys
from .membership import REPORT_EVERY, MemberInfo, Membership, MembershipLost, this_process
from .rendezvous import Ownership
from .status_writer import LostLeadership
from .store import RegistryStore

HubMode = Literal["sharded", "leader"]

log = logging.getLogger(__name__)

_INITIAL_BACKOFF = 0.5
_MAX_BACKOFF = 5.0
UNFREEZE_EVERY = 300.0  # seconds; see HubRunner._freeze_long_lived
FREEZE_FROM = 500  # instances; below this a full collection is cheap (about 45 ms per 1,000 instances)
_FREEZE_IDLE = 10.0  # how often to look again while there is nothing to check


def new_hub_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:6]}"


class HubRunner:
    """``mode``: sharded (the default, as the ``hub_mode`` setting) or leader; ``weight``: this hub's share
    in sharded mode relative to the others' (``hub_weight``)."""

    def __init__(
        self,
        etcd: EtcdClient,
        keys: RegistryKeys,
        *,
        lease_ttl: int = 10,
        hub_id: str | None = None,
        on_transition: Transition | None = None,
        freeze_from: int = FREEZE_FROM,
        mode: HubMode = "sharded",
        weight: float = 1.0,
    ) -> None:
        self.etcd = etcd
        self.keys = keys
        self.lease_ttl = lease_ttl
        self.hub_id = hub_id or new_hub_id()
        self.on_transition = on_transition
        self.freeze_from = freeze_from
        self.mode = mode
        self.weight = weight
        self.hub: Hub | None = None  # set while this process checks (leads, in leader mode)
        self.holds_duties = False  # whether this hub holds the registry-wide duties now
        self.members: dict[str, MemberInfo] = {}  # sharded mode: the hub group as last seen

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with Prober() as prober, anyio.create_task_group() as tg:
            tg.start_soon(self._freeze_long_lived)
            task_status.started()
            backoff = Backoff(_INITIAL_BACKOFF, _MAX_BACKOFF)
            term = self._sharded_term if self.mode == "sharded" else self._term
            while True:
                try:
                    await term(prober)
                    backoff.reset()
                    delay = backoff.next_delay()
                except Exception as error:
                    delay = backoff.next_delay()
                    self._report(error, delay)
                await anyio.sleep(delay)

    async def _freeze_long_lived(self) -> None:
        """Keep CPython's full collections from stalling the loop in proportion to the instance count.

        Every check cycle leaves objects that live one interval (a sleep's future and timer, coroutine
        frames), so they reach the oldest generation, and a full collection then walks every object of
        every instance: about 45 ms per 1,000 instances, every few seconds (bench/README.md). So while
        this hub leads ``freeze_from`` instances or more, what lives now is frozen each interval. Frozen
        objects are never collected, and the process also holds the MCP layer, whose reference cycles
        would be frozen before the collector reached them (bench/soak.py saw memory grow by 2 MiB a
        minute when this froze hourly): so every ``UNFREEZE_EVERY`` all is unfrozen and collected once.
        It spans leadership terms: unfreezing at a term's end would hand the next term's start every
        object at once. Below ``freeze_from`` nothing is frozen.
        """
        unfrozen_at = anyio.current_time()
        try:
            while True:
                await anyio.sleep((self.hub.shortest_interval() if self.hub else None) or _FREEZE_IDLE)
                if self.hub is None or len(self.hub.monitors) < self.freeze_from:
                    gc.unfreeze()  # (a no-op when nothing is frozen) collected as usual again
                    continue
                if anyio.current_time() - unfrozen_at >= UNFREEZE_EVERY:
                    gc.unfreeze()
                    gc.collect()
                    unfrozen_at = anyio.current_time()
                gc.freeze()
        finally:
            gc.unfreeze()  # whatever the process does next, its objects are collected as usual again

    def _report(self, error: Exception, delay: float) -> None:
        leaves = leaf_exceptions(error)
        if all(isinstance(leaf, KkEtcdError | LostLeadership | MembershipLost) for leaf in leaves):
            reason = "; ".join(str(leaf) for leaf in leaves)
            again = "joining the hub group again" if self.mode == "sharded" else "campaigning again"
            log.warning("hub %s: %s; %s in %.1fs", self.hub_id, reason, again, delay)
        else:  # a bug must not take the MCP server down with it: log it, start over
            log.error("hub %s failed; starting again in %.1fs", self.hub_id, delay, exc_info=error)

    async def _term(self, prober: Prober) -> None:
        """One campaign and, if won, one term of checking; returns when the lease is lost."""
        async with LeaseSession(self.etcd, self.lease_ttl) as session, anyio.create_task_group() as tg:
            tg.start_soon(self._stop_when_lost, session, tg.cancel_scope)
            election = Election(self.etcd, self.keys.leader, session)
            await election.campaign(self.hub_id)
            log.info("hub %s leads: checking registrations under %s", self.hub_id, self.keys.registrations)
            store = RegistryStore(self.etcd, self.keys)
            hub = Hub(store, prober, election.is_leader_compare, self.hub_id, on_transition=self.on_transition)
            self.hub = hub
            self.holds_duties = True
            metrics.HUB_MEMBERS.set(1)
            try:
                await hub.run()
            finally:
                self.hub = None
                self.holds_duties = False
                metrics.HUB_MEMBERS.set(0)
                metrics.OWNED_INSTANCES.set(0)

    async def _sharded_term(self, prober: Prober) -> None:
        """One membership of the hub group: join, check this hub's share, leave (or lose the lease)."""
        async with LeaseSession(self.etcd, self.lease_ttl) as session, anyio.create_task_group() as tg:
            tg.start_soon(self._leave_when_lost, session)
            membership = Membership(self.etcd, self.keys, session, this_process(self.hub_id, self.weight))
            await membership.join()
            store = RegistryStore(self.etcd, self.keys)
            ownership = Ownership()
            hub = Hub(
                store,
                prober,
                membership.fence,
                self.hub_id,
                on_transition=self.on_transition,
                ownership=ownership,
                membership=membership,
            )
            known = anyio.Event()

            def members_changed(members: dict[str, MemberInfo]) -> None:
                self.members = members
                metrics.HUB_MEMBERS.set(len(members))
                hub.set_members(membership.weights())
                known.set()

            tg.start_soon(membership.follow, members_changed)
            await known.wait()  # the first sync already knows the group
            log.info("hub %s joined a group of %d: checking its share", self.hub_id, len(self.members))
            self.hub = hub
            try:
                tg.start_soon(self._report_figures, membership, hub)
                tg.start_soon(self._hold_duties, session, hub)
                await hub.run()
            finally:
                self.hub = None
                self.holds_duties = False
                self.members = {}
                metrics.HUB_MEMBERS.set(0)
                metrics.OWNED_INSTANCES.set(0)

    async def _hold_duties(self, session: LeaseSession, hub: Hub) -> None:
        """Campaign on the term's lease; once elected, keep the alive document for the whole group."""
        election = Election(self.etcd, self.keys.leader, session)
        await election.campaign(self.hub_id)
        log.info("hub %s holds the registry-wide duties (the alive document)", self.hub_id)
        self.holds_duties = True
        try:
            await AliveDuty(hub, election.is_leader_compare()).run()
        finally:
            self.holds_duties = False

    async def _report_figures(self, membership: Membership, hub: Hub) -> None:
        """Refresh this member's figures in its key, for ``hub_status``."""
        while True:
            await anyio.sleep(REPORT_EVERY)
            recent = hub.stats.recent
            info = membership.info.model_copy(
                update={
                    "owned": len(hub.monitors),
                    "checks_per_second": round(recent.per_second(), 2),
                    "lateness_p99_ms": round(recent.p99() * 1000, 2),
                    "reported_at": datetime.now(UTC),
                }
            )
            await membership.report(info)

    async def _leave_when_lost(self, session: LeaseSession) -> None:
        """Sharded mode: a lost lease ends the term like a refused write, with one log line (``_report``)."""
        await session.lost.wait()
        raise MembershipLost(f"hub {self.hub_id} lost its lease: no keepalive reached etcd in time")

    async def _stop_when_lost(self, session: LeaseSession, scope: anyio.CancelScope) -> None:
        await session.lost.wait()
        log.warning("hub %s lost its lease: it stops checking and campaigns again", self.hub_id)
        scope.cancel()
