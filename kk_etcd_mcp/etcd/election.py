"""Leader election with etcd's own protocol (Go's ``concurrency.Election``), on our lease session.

A candidate writes ``<prefix>/<lease id in hex>`` on its lease; the key with the lowest create
revision leads; the others wait for the deletion of the key just before theirs. The layout is Go's,
so ``etcdctl elect -l <prefix>`` shows the leader. etcd3aio's ``Election`` follows the same protocol
but fixes the key prefix, keeps no lease alive, and waits on a watch that can miss the deletion after
a reconnect; this one waits with ``list_and_watch`` (resumes without gaps, reads the candidates again
after a compaction) and is fenced by ``is_leader_compare`` in the leader's writes.
"""

from __future__ import annotations

import logging
from contextlib import aclosing

from .client import EtcdClient, as_bytes, prefix_end
from .listwatch import Snapshot, list_and_watch
from .session import LeaseSession
from .types import Compare, Delete, Get, KeyValue, Put, RangePage

log = logging.getLogger(__name__)


class Election:
    def __init__(self, etcd: EtcdClient, prefix: str, session: LeaseSession) -> None:
        self.etcd = etcd
        self.prefix = prefix.rstrip("/") + "/"
        self.session = session
        self.key = f"{self.prefix}{session.lease_id:x}".encode()
        self.create_revision = 0
        self.value = b""

    async def campaign(self, value: str) -> None:
        """Return once this candidate leads (run it in a scope cancelled when ``session.lost`` is set).

        ``value`` names the candidate and must be unique to it: a key of an earlier lease holding the same
        value is this candidate's own, left by a term whose lease it gave up (etcd was away), and is removed
        instead of waited for.
        """
        self.value = as_bytes(value)
        result = await self.etcd.txn(
            [Compare(self.key, "create", "==", 0)],
            [Put(self.key, as_bytes(value), lease=self.session.lease_id)],
            [Get(self.key)],
        )
        if result.succeeded:
            self.create_revision = result.revision
        else:  # our key exists already (a campaign retried on the same lease)
            page = result.results[0]
            assert isinstance(page, RangePage)
            self.create_revision = page.kvs[0].create_revision
        await self._wait_for_predecessors()

    async def _wait_for_predecessors(self) -> None:
        while True:
            page = await self.etcd.range(self.prefix, prefix_end(self.prefix))
            older = [kv for kv in page.kvs if kv.create_revision < self.create_revision]
            if not older:
                return
            own = [kv for kv in older if kv.value == self.value]
            if own:
                for kv in own:
                    log.info("removing this candidate's key of an earlier lease: %s", kv.key.decode(errors="replace"))
                    await self.etcd.txn([Compare(kv.key, "create", "==", kv.create_revision)], [Delete(kv.key)])
                continue
            predecessor = max(older, key=lambda kv: kv.create_revision)
            log.info("standing by: %s leads", _describe(predecessor))
            await _until_deleted(self.etcd, predecessor.key, page.revision + 1)

    def is_leader_compare(self) -> Compare:
        """Put this in a transaction to write only while this candidate still leads."""
        return Compare(self.key, "create", "==", self.create_revision)

    async def resign(self) -> None:
        """Step down now, so a standby takes over without waiting for the lease to expire."""
        if self.create_revision:
            await self.etcd.txn([self.is_leader_compare()], [Delete(self.key)])
            self.create_revision = 0


async def current_leader(etcd: EtcdClient, prefix: str) -> KeyValue | None:
    """The leading candidate's key (its value names it), or None when nobody campaigns."""
    prefix = prefix.rstrip("/") + "/"
    page = await etcd.range(prefix, prefix_end(prefix))
    return min(page.kvs, key=lambda kv: kv.create_revision, default=None)


async def _until_deleted(etcd: EtcdClient, key: bytes, start_revision: int) -> None:
    """Return once ``key`` is deleted after ``start_revision - 1``, or once events were lost to a compaction
    (then the caller reads the candidates again)."""
    updates = list_and_watch(etcd, key, start_revision=start_revision, keys_only=True)
    async with aclosing(updates):
        async for update in updates:
            if isinstance(update, Snapshot) or any(event.type == "delete" for event in update.events):
                return


def _describe(kv: KeyValue) -> str:
    return f"{kv.value.decode(errors='replace') or kv.key.decode(errors='replace')}"
