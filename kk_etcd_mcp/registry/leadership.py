"""HubRunner: campaign at ``<root>hub/leader``; check while leading, stand by otherwise.

Only the leader checks and writes statuses (its writes are fenced by its election key). A leader that
stops revokes its lease, so a standby takes over at once; one that dies is replaced when its lease
expires (``lease_ttl``). The new leader starts from the statuses in etcd, not from ``critical``.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from uuid import uuid4

import anyio

from ..backoff import Backoff
from ..errors import KkEtcdError, leaf_exceptions
from ..etcd import Election, EtcdClient, LeaseSession
from .checkers import Prober
from .hub import Hub, Transition
from .keys import RegistryKeys
from .status_writer import LostLeadership
from .store import RegistryStore

log = logging.getLogger(__name__)

_INITIAL_BACKOFF = 0.5
_MAX_BACKOFF = 5.0
UNFREEZE_EVERY = 300.0  # seconds; see HubRunner._freeze_long_lived
FREEZE_FROM = 500  # instances; below this a full collection is cheap (about 45 ms per 1,000 instances)
_FREEZE_IDLE = 10.0  # how often to look again while there is nothing to check


def new_hub_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:6]}"


class HubRunner:
    def __init__(
        self,
        etcd: EtcdClient,
        keys: RegistryKeys,
        *,
        lease_ttl: int = 10,
        hub_id: str | None = None,
        on_transition: Transition | None = None,
        freeze_from: int = FREEZE_FROM,
    ) -> None:
        self.etcd = etcd
        self.keys = keys
        self.lease_ttl = lease_ttl
        self.hub_id = hub_id or new_hub_id()
        self.on_transition = on_transition
        self.freeze_from = freeze_from
        self.hub: Hub | None = None  # set while this process leads

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with Prober() as prober, anyio.create_task_group() as tg:
            tg.start_soon(self._freeze_long_lived)
            task_status.started()
            backoff = Backoff(_INITIAL_BACKOFF, _MAX_BACKOFF)
            while True:
                try:
                    await self._term(prober)
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
        if all(isinstance(leaf, KkEtcdError | LostLeadership) for leaf in leaves):
            reason = "; ".join(str(leaf) for leaf in leaves)
            log.warning("hub %s: %s; campaigning again in %.1fs", self.hub_id, reason, delay)
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
            try:
                await hub.run()
            finally:
                self.hub = None

    async def _stop_when_lost(self, session: LeaseSession, scope: anyio.CancelScope) -> None:
        await session.lost.wait()
        log.warning("hub %s lost its lease: it stops checking and campaigns again", self.hub_id)
        scope.cancel()
