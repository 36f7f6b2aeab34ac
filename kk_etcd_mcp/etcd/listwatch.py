"""List, then watch: follow a key or a range from a consistent snapshot, with nothing missed or seen twice.

The pattern of etcd's own informers and of the Go client's naming watcher: read every key of the range
at one revision R (page by page, ``EtcdClient.range_pages``), then watch from R + 1. The watch resumes a
broken stream from the revision after the last event it delivered (``EtcdClient.watch``). When etcd has
compacted away the history the watch needs (it was cut off for a while), the events in between are
gone: the range is listed again and a new snapshot, marked ``relisted``, replaces the old view.

    async with aclosing(list_and_watch(etcd, "app/", prefix=True)) as updates:
        async for update in updates:
            if isinstance(update, Snapshot):    # the whole range at update.revision: replace what you hold
                view = {kv.key: kv for kv in update.kvs}
            else:                               # a WatchBatch: apply the events, in order
                for event in update.events:
                    ...

Close the iterator (``aclosing``, or leave the ``async for`` and let the task end) to stop watching.
Used by the hub, the MCP resource subscriptions, the election's wait and ``kk-etcd-mcp services --watch``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

import anyio

from ..backoff import Backoff
from ..errors import CompactedError, KkEtcdError
from .client import BytesLike, EtcdClient, as_bytes, prefix_end
from .types import KeyValue, WatchBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every key of the followed range at ``revision`` (keys only, empty values, with ``keys_only``).

    The first update when following starts without a ``start_revision``; after that only when etcd
    compacted away events that were never delivered (``relisted``): then it replaces everything known
    before, and the changes in between are not reported one by one.
    """

    revision: int
    kvs: list[KeyValue]
    relisted: bool = False


RangeUpdate = Snapshot | WatchBatch  # what list_and_watch yields


async def list_and_watch(
    etcd: EtcdClient,
    key: BytesLike,
    range_end: BytesLike | None = None,
    *,
    prefix: bool = False,
    start_revision: int = 0,
    keys_only: bool = False,
    retry: Backoff | None = None,
) -> AsyncGenerator[RangeUpdate, None]:
    """Follow ``key`` (or ``[key, range_end)``, or every key under ``key`` with ``prefix``): a ``Snapshot``
    of it, then a ``WatchBatch`` for every change, with a new ``Snapshot`` whenever etcd compacted away
    events the watch still needed.

    ``start_revision``: the caller already knows the range as of ``start_revision - 1`` (it read it at
    that revision): no first snapshot, the watch starts there. ``keys_only``: snapshots without values
    (the events still carry them).

    Failures other than compaction (etcd refusing the watch, the user's permission) are raised, unless
    ``retry`` is given: then they are logged and the watch starts again after the backoff's delay, from
    the last revision seen (or with a snapshot, when nothing was seen yet).
    """
    if prefix:
        if range_end is not None:
            raise ValueError("give range_end or prefix=True, not both")
        range_end = prefix_end(key)
    shown = as_bytes(key).decode(errors="backslashreplace")
    next_revision = start_revision  # 0: list first
    relisted = False
    while True:
        try:
            if next_revision == 0:
                snapshot = await _list(etcd, key, range_end, keys_only=keys_only, relisted=relisted)
                next_revision = snapshot.revision + 1
                relisted = False
                if retry is not None:
                    retry.reset()
                yield snapshot
            watch = etcd.watch(key, range_end, start_revision=next_revision)
            async with aclosing(watch):
                async for batch in watch:
                    if batch.events:
                        next_revision = batch.events[-1].kv.mod_revision + 1
                    if retry is not None:
                        retry.reset()
                    yield batch
        except CompactedError as error:
            log.warning("%s; listing %s again", error, shown)
            next_revision, relisted = 0, True
        except KkEtcdError as error:
            if retry is None:
                raise
            delay = retry.next_delay()
            log.warning("watch on %s: %s; trying again in %.1fs", shown, error, delay)
            await anyio.sleep(delay)


async def _list(
    etcd: EtcdClient, key: BytesLike, range_end: BytesLike | None, *, keys_only: bool, relisted: bool
) -> Snapshot:
    kvs: list[KeyValue] = []
    revision = 0
    async for page in etcd.range_pages(key, range_end, keys_only=keys_only):
        revision = page.revision
        kvs.extend(page.kvs)
    return Snapshot(revision, kvs, relisted)
