"""Resource subscriptions driven by etcd watches: who follows what, and one shared watch per thing watched.

A subscription names a resource URI. Its ``Target`` gives the *topic* it follows (the resource's
canonical URI, so ``etcd://kv//a`` and ``etcd://kv/%2Fa`` are one topic) and the etcd watch that sees
the topic change. Watches are shared and reference-counted: the first subscription through a watch
starts it, the last one to leave cancels it. A subscriber is told the URI as it spelled it.

A watch starts at the revision read while subscribing, plus one, so no change made after the subscribe
call returned is missed. ``list_and_watch`` resumes broken streams itself and retries after other
failures; after a compaction the events in between are gone, so every topic of the watch is reported
as changed (an update only says "read again") and the watch goes on from the revision it listed again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from ..backoff import Backoff
from ..errors import InvalidArgumentError
from ..etcd import EtcdClient, RangeUpdate, Snapshot, WatchEvent, list_and_watch

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 1000  # per subscriber: each distinct key costs a watch stream on the etcd connection
_INITIAL_BACKOFF = 0.5
_MAX_BACKOFF = 30.0


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """One etcd watch: a key (``range_end`` None) or a range, and the topics an event there changes."""

    key: bytes
    range_end: bytes | None
    topics: Callable[[WatchEvent], Iterable[str]] = field(compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Target:
    topic: str
    watch: WatchSpec


class NotRunning(RuntimeError):
    """Subscriptions need ``ResourceWatches.run()`` to be held (``serve`` does)."""


class Subscriber:
    """A client session, or all listen streams together: told when a URI it follows may have changed."""

    def __init__(self) -> None:
        self.targets: dict[str, Target] = {}  # uri as subscribed -> what it follows
        self.closed = False

    async def updated(self, uris: set[str]) -> None:
        raise NotImplementedError


@dataclass(eq=False)
class _Watch:
    spec: WatchSpec
    topics: Counter[str] = field(default_factory=Counter)  # topic -> subscriptions through this watch
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


class ResourceWatches:
    def __init__(self, etcd: EtcdClient) -> None:
        self._etcd = etcd
        self._watches: dict[WatchSpec, _Watch] = {}
        self._followers: dict[str, dict[Subscriber, set[str]]] = {}  # topic -> subscriber -> its uris
        self._tg: TaskGroup | None = None

    @property
    def running(self) -> bool:
        return self._tg is not None

    @property
    def watch_count(self) -> int:
        return len(self._watches)

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Own the watch tasks for the duration of the block."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                self._watches.clear()
                tg.cancel_scope.cancel()

    async def subscribe(self, subscriber: Subscriber, uri: str, target: Target) -> None:
        """Follow ``uri``; raises KkEtcdError (nothing subscribed) when etcd cannot be read."""
        if uri in subscriber.targets:
            return
        if len(subscriber.targets) >= MAX_SUBSCRIPTIONS:
            raise InvalidArgumentError(
                f"at most {MAX_SUBSCRIPTIONS} subscriptions per session; unsubscribe from some first"
            )
        if self._tg is None:
            raise NotRunning("resource subscriptions are not running in this server")
        start_revision = 0
        if target.watch not in self._watches:
            start_revision = await self._revision(target.watch) + 1
            if subscriber.closed or uri in subscriber.targets or self._tg is None:
                return  # the session ended, or a concurrent call subscribed, while etcd answered
        watch = self._watches.get(target.watch)
        if watch is None:
            watch = self._watches[target.watch] = _Watch(target.watch)
            self._tg.start_soon(self._follow, watch, start_revision)
        watch.topics[target.topic] += 1
        subscriber.targets[uri] = target
        self._followers.setdefault(target.topic, {}).setdefault(subscriber, set()).add(uri)

    def unsubscribe(self, subscriber: Subscriber, uri: str) -> None:
        target = subscriber.targets.pop(uri, None)
        if target is None:
            return
        followers = self._followers.get(target.topic, {})
        uris = followers.get(subscriber, set())
        uris.discard(uri)
        if not uris:
            followers.pop(subscriber, None)
        if not followers:
            self._followers.pop(target.topic, None)
        watch = self._watches.get(target.watch)
        if watch is None:
            return
        watch.topics[target.topic] -= 1
        if watch.topics[target.topic] <= 0:
            del watch.topics[target.topic]
        if not watch.topics:
            watch.scope.cancel()
            del self._watches[target.watch]

    def drop(self, subscriber: Subscriber) -> None:
        """Forget a subscriber that went away, with all it followed."""
        subscriber.closed = True
        for uri in list(subscriber.targets):
            self.unsubscribe(subscriber, uri)

    # Watching -------------------------------------------------------------------------------------

    async def _revision(self, spec: WatchSpec) -> int:
        return (await self._etcd.range(spec.key, spec.range_end, count_only=True)).revision

    async def _follow(self, watch: _Watch, start_revision: int) -> None:
        spec = watch.spec
        retry = Backoff(_INITIAL_BACKOFF, _MAX_BACKOFF)
        with watch.scope:
            while True:
                try:
                    updates = list_and_watch(
                        self._etcd, spec.key, spec.range_end, start_revision=start_revision, keys_only=True, retry=retry
                    )
                    async with aclosing(updates):
                        async for update in updates:
                            await self._notify(_changed(watch, update))
                except Exception:  # a bug must not end every other subscription: log it, start over
                    delay = retry.next_delay()
                    log.exception("watch on %s failed; starting it again in %.1fs", _show(spec.key), delay)
                    start_revision = 0  # list again: what happened meanwhile is reported as a change of everything
                    await anyio.sleep(delay)

    async def _notify(self, topics: set[str]) -> None:
        for topic in topics:
            for subscriber, uris in list(self._followers.get(topic, {}).items()):
                await subscriber.updated(set(uris))


def _changed(watch: _Watch, update: RangeUpdate) -> set[str]:
    """The topics an update changed: after a new snapshot (events were lost to a compaction, or a restart
    of the watch), every topic of the watch."""
    if isinstance(update, Snapshot):
        return set(watch.topics)
    return {topic for event in update.events for topic in watch.spec.topics(event)}


def _show(key: bytes) -> str:
    return key.decode(errors="backslashreplace")
