"""Writes status changes, gRPC endpoints and the alive document: coalesced, batched, fenced.

Check loops never wait on etcd: they hand their transitions to ``set`` and go on checking. When etcd
is slow or away, the latest status per instance waits here and is written once etcd answers. Every
transaction carries the hub's fence (its leadership, or in sharded mode its membership), so a hub that
lost it writes nothing: the refused writes are counted (``fenced_write_refusals``) and the hub's term
ends with one log line, after which it campaigns or joins again. An instance's
endpoint change (``set_endpoint``) goes in the same transaction as its status when both wait. The
alive document covers every alive instance, so it is rebuilt at most once per ``ALIVE_MIN_GAP``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from itertools import islice
from typing import Protocol

import anyio

from .. import metrics
from ..errors import KkEtcdError
from ..etcd import Compare, Delete, EtcdClient, Put, TxnOp
from .keys import InstanceKey, RegistryKeys
from .model import HealthStatus
from .wire import alive_document, status_to_json

log = logging.getLogger(__name__)

AliveSource = Callable[[], list[tuple[InstanceKey, str]]]  # each alive instance with its registration JSON

_BATCH = 100  # etcd refuses transactions of more than 128 operations by default
_RETRY_DELAY = 1.0
_CATCH_UP_DELAY = 0.05  # a write refused because a newcomer joined waits this long for the hub to hear of it
ALIVE_MIN_GAP = 1.0
# etcd takes requests up to 1.5 MiB by default; an alive document larger than this is not written.
ALIVE_DOCUMENT_LIMIT = 1024 * 1024


class LostLeadership(Exception):
    """A fenced write failed: another hub leads now, or this hub is no member of the group any more."""


class BehindTheGroup(Exception):
    """A write refused by ``Membership.view`` alone: a hub joined that this hub has not heard of yet."""


class Membership(Protocol):
    """What a sharded hub's writer asks of its membership (``membership.Membership``)."""

    def view(self) -> Compare: ...

    async def fence_holds(self) -> bool: ...


class StatusWriter:
    def __init__(
        self,
        etcd: EtcdClient,
        keys: RegistryKeys,
        fence: Callable[[], Compare],
        alive: AliveSource | None,
        *,
        lost: str = "another hub leads now",
        membership: Membership | None = None,
        owns: Callable[[InstanceKey], bool] = lambda key: True,
    ) -> None:
        """``alive``: every alive instance for the alive document; None: not this writer's job.
        ``lost``: what a refused write means, for the log. ``membership`` and ``owns``: sharded mode, where
        each write also carries the hub's view of the group (``Membership.view``), and what waits for an
        instance that moved meanwhile is dropped (its new owner writes it now)."""
        self.etcd = etcd
        self.keys = keys
        self.fence = fence
        self.membership = membership
        self.owns = owns
        self._alive = alive
        self._lost = lost
        self._pending: dict[InstanceKey, HealthStatus | None] = {}
        self._endpoints: dict[InstanceKey, str | None] = {}  # endpoint JSON to put, None to delete
        self._alive_changed = alive is not None
        self._alive_written_at = -math.inf
        self._written_alive: str | None = None  # None with _alive_known: the document was deleted
        self._alive_known = False
        self._wake = anyio.Event()
        self.writes = 0

    def set(self, key: InstanceKey, status: HealthStatus | None, *, alive_changed: bool = True) -> None:
        """Queue a status (None: delete it); a newer status for the same instance replaces a queued one."""
        self._pending[key] = status
        self._alive_changed = self._alive_changed or (alive_changed and self._alive is not None)
        self._wake.set()

    def set_endpoint(self, key: InstanceKey, document: str | None) -> None:
        """Queue a gRPC instance's endpoint (None: delete it); a newer one replaces a queued one."""
        self._endpoints[key] = document
        self._wake.set()

    def touch_alive(self) -> None:
        """Rewrite the alive document soon (a new term, or a relist: it may be stale or missing)."""
        if self._alive is None:
            return
        self._alive_changed = True
        self._wake.set()

    async def run(self) -> None:
        while True:
            with anyio.move_on_after(self._until_alive_due()):
                await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self.flush()
            except KkEtcdError as error:
                log.warning("status writes wait for etcd: %s", error)
                await anyio.sleep(_RETRY_DELAY)
                self._wake.set()
            except BehindTheGroup:
                # Another hub joined: the hub hands over what moved (discard) once it hears of it, soon.
                await anyio.sleep(_CATCH_UP_DELAY)
                self._wake.set()

    def _until_alive_due(self) -> float:
        if not self._alive_changed:
            return math.inf
        return max(0.0, self._alive_written_at + ALIVE_MIN_GAP - anyio.current_time())

    async def flush(self) -> None:
        while self._pending or self._endpoints:
            statuses, endpoints = self._take_batch()
            ops = [self._op(key, status) for key, status in statuses.items()]
            ops += [self._endpoint_op(key, document) for key, document in endpoints.items()]
            if not ops:
                continue  # all that was taken had moved away
            try:
                await self._write(ops)
            except BaseException:  # put back what a newer set() or set_endpoint() did not replace
                for key, status in statuses.items():
                    self._pending.setdefault(key, status)
                for key, document in endpoints.items():
                    self._endpoints.setdefault(key, document)
                raise
        if self._alive_changed and self._until_alive_due() == 0:
            await self._write_alive()

    async def _write_alive(self) -> None:
        assert self._alive is not None
        self._alive_changed = False
        self._alive_written_at = anyio.current_time()
        alive = self._alive()
        size = sum(len(document) for _, document in alive)
        document = alive_document(alive) if size <= ALIVE_DOCUMENT_LIMIT else None
        if self._alive_known and document == self._written_alive:
            return
        if document is None:
            # Better no document than a stale one: kk_etcd_go clients then fail loudly instead of routing wrong.
            log.warning("alive document of about %d bytes is over %d: deleting it", size, ALIVE_DOCUMENT_LIMIT)
        key = self.keys.alive.encode()
        try:
            await self._write([Put(key, document.encode()) if document is not None else Delete(key)])
        except BaseException:
            self._alive_changed = True
            raise
        self._written_alive, self._alive_known = document, True

    def _take_batch(self) -> tuple[dict[InstanceKey, HealthStatus | None], dict[InstanceKey, str | None]]:
        """At most ``_BATCH`` operations: statuses first, each with its instance's endpoint, then endpoints.

        Ownership is asked here, next to the write that carries the view it was decided on: a write
        refused because the group changed is put back, and may be for an instance that moved since."""
        statuses: dict[InstanceKey, HealthStatus | None] = {}
        endpoints: dict[InstanceKey, str | None] = {}
        for key in list(islice(self._pending, _BATCH)):  # not a copy of all that waits
            if len(statuses) + len(endpoints) + 1 + (key in self._endpoints) > _BATCH:
                break
            status, with_endpoint = self._pending.pop(key), key in self._endpoints
            document = self._endpoints.pop(key, None)
            if not self.owns(key):
                continue  # moved to another hub meanwhile: its new owner writes it
            statuses[key] = status
            if with_endpoint:
                endpoints[key] = document
        for key in list(islice(self._endpoints, _BATCH - len(statuses) - len(endpoints))):
            document = self._endpoints.pop(key)
            if self.owns(key):
                endpoints[key] = document
        return statuses, endpoints

    def _endpoint_op(self, key: InstanceKey, document: str | None) -> TxnOp:
        raw_key = self.keys.endpoint(key.name, key.addr).encode()
        return Put(raw_key, document.encode()) if document is not None else Delete(raw_key)

    def _op(self, key: InstanceKey, status: HealthStatus | None) -> TxnOp:
        raw_key = self.keys.status(key).encode()
        if status is None:
            return Delete(raw_key)
        return Put(raw_key, status_to_json(status).encode())

    async def _write(self, ops: list[TxnOp]) -> None:
        view = [] if self.membership is None else [self.membership.view()]
        result = await self.etcd.txn([self.fence(), *view], ops)
        if not result.succeeded:
            if view and self.membership is not None and await self.membership.fence_holds():
                raise BehindTheGroup
            metrics.FENCED_REFUSALS.inc(len(ops))
            raise LostLeadership(f"{self._lost}: etcd refused {len(ops)} fenced write(s); this hub stops checking")
        self.writes += len(ops)
        metrics.STATUS_WRITES.inc(len(ops))
