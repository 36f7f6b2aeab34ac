"""Live configuration: a key (``LiveConfig``) or a prefix (``LiveConfigMap``) kept current from etcd.

Both follow etcd with the adapter's ``list_and_watch`` (a snapshot, then every change once and in order;
a broken stream resumes after the last event seen; after a compaction the range is read again), retried
with the shared ``Backoff`` while etcd is away. On top of that they decide what reaches the application:

- only valid values: one that does not parse or fit the model is not delivered; the last good value
  stays, the error is logged once (key, revision, reason) and kept in ``error`` until a valid one comes;
- nothing twice: a value is delivered only when its revision is newer than the one held, so neither a
  re-read after a compaction nor the first read after starting from the cached copy repeats it;
- each new value to every ``async for`` over the object and to every ``on_change`` callback, in order.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar

import anyio

from ..backoff import Backoff
from ..errors import InvalidConfigError, NotFoundError, UnavailableError
from ..etcd import EtcdClient, KeyValue, Snapshot, WatchEvent, list_and_watch
from .cache import CachedConfig, CachedValue, read_cache, write_cache
from .keys import show

log = logging.getLogger(__name__)

V = TypeVar("V")
T = TypeVar("T")
L = TypeVar("L", bound="Live[Any]")

OnDelete = Literal["keep", "raise"]
Parse = Callable[[str, int, bytes], Awaitable[T]]  # (key, revision, raw) -> the value, or InvalidConfigError
Callback = Callable[[V], Awaitable[object] | object]

_RETRY_INITIAL = 0.2
_RETRY_CAP = 5.0


class _Raise:
    """An error an ``async for`` over the live value raises where a value would come (a deleted key)."""

    def __init__(self, make: Callable[[], Exception]) -> None:
        self.make = make


class _Updates(Generic[V]):
    """One ``async for`` over a live value: the values delivered after it started, in order.

    Registered when the loop starts; dropped (weakly held) when the loop is left. Unbounded, because
    configuration changes are few and every one must reach the loop.
    """

    def __init__(self) -> None:
        self._items: deque[V | _Raise] = deque()
        self._arrived = anyio.Event()
        self._closed = False

    def put(self, item: V | _Raise) -> None:
        self._items.append(item)
        self._arrived.set()

    def close(self) -> None:
        self._closed = True
        self._arrived.set()

    def __aiter__(self) -> _Updates[V]:
        return self

    async def __anext__(self) -> V:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            await self._arrived.wait()
            self._arrived = anyio.Event()
        item = self._items.popleft()
        if isinstance(item, _Raise):
            raise item.make()
        return item


class Live(Generic[V]):
    """What a live key and a live prefix share: delivery to loops and callbacks, following etcd, the cache."""

    def __init__(self, watched: str, prefix: bool, cache_file: Path | None) -> None:
        self.watched = watched
        self.revision = 0
        self.from_cache = False  # the value came from cache_file and etcd has not answered since
        self.is_prefix = prefix  # watched is a prefix, not a key
        self.cache_file = cache_file
        self._callbacks: list[Callback[V]] = []
        self._loops: weakref.WeakSet[_Updates[V]] = weakref.WeakSet()
        self._lock = anyio.Lock()  # one update at a time: etcd's and the cached copy's

    def on_change(self, callback: Callback[V]) -> Callback[V]:
        """Call ``callback(value)`` (a function or a coroutine function) with every new valid value, in the
        watch's task: a slow callback delays the next delivery. Its exceptions are logged and the watch goes
        on. Returns ``callback``, so it also works as a decorator."""
        self._callbacks.append(callback)
        return callback

    def __aiter__(self) -> _Updates[V]:
        """Every new valid value from now on (the current one is ``value``); ends when the watch does."""
        loop: _Updates[V] = _Updates()
        self._loops.add(loop)
        return loop

    async def _deliver(self, value: V) -> None:
        for loop in list(self._loops):
            loop.put(value)
        for callback in list(self._callbacks):
            try:
                result = callback(value)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # the application's code: its bug must not stop the watch
                log.exception("an on_change callback for %s failed; the watch goes on", self.watched)

    def _raise_in_loops(self, make: Callable[[], Exception]) -> None:
        for loop in list(self._loops):
            loop.put(_Raise(make))

    def _end(self) -> None:
        for loop in list(self._loops):
            loop.close()

    async def _follow(self, etcd: EtcdClient, ready: anyio.Event) -> None:
        """Apply etcd's snapshots and changes until cancelled; ``ready`` is set by the first snapshot."""
        retry = Backoff(_RETRY_INITIAL, _RETRY_CAP)
        updates = list_and_watch(etcd, self.watched, prefix=self.is_prefix, retry=retry)
        async with aclosing(updates):
            async for update in updates:
                async with self._lock:
                    if isinstance(update, Snapshot):
                        self.from_cache = False
                        await self._apply_snapshot(update.kvs, update.revision)
                        ready.set()
                    else:
                        await self._apply_events(update.events)

    async def _start_from_cache(self, cached: CachedConfig, ready: anyio.Event) -> bool:
        """Take the cached values, unless etcd answered meanwhile; True when they were taken."""
        async with self._lock:
            if ready.is_set():
                return False
            kvs = [KeyValue(v.key.encode(), v.text.encode(), 0, v.mod_revision, 1) for v in cached.values]
            await self._apply_snapshot(kvs, cached.revision)
            self.from_cache = True
            return True

    async def _save(self, values: Sequence[CachedValue]) -> None:
        if self.cache_file is not None:
            await write_cache(self.cache_file, CachedConfig(self.watched, self.is_prefix, self.revision, list(values)))

    async def _apply_snapshot(self, kvs: Sequence[KeyValue], revision: int) -> None:
        raise NotImplementedError

    async def _apply_events(self, events: Sequence[WatchEvent]) -> None:
        raise NotImplementedError


class LiveConfig(Live[T]):
    """One key kept current: ``value`` (the latest valid value), ``revision`` (its mod_revision), ``error``
    (why the newest value was refused, until a valid one arrives), ``deleted``; ``async for value in live``
    and ``live.on_change(fn)`` for each new value.

    A deleted key: with ``on_delete="keep"`` ``value`` stays the last valid one (``deleted`` says it is
    gone); with ``"raise"`` reading ``value`` raises NotFoundError, and so does an ``async for`` loop, once,
    until the key is written again.
    """

    def __init__(self, key: str, parse: Parse[T], on_delete: OnDelete, cache_file: Path | None) -> None:
        super().__init__(key, False, cache_file)
        self.key = key
        self.error: InvalidConfigError | None = None
        self._parse = parse
        self._on_delete = on_delete
        self._value: T | None = None
        self._has_value = False
        self._text = ""
        self._deleted_at = 0  # the revision that deleted the key (or the one it was found absent at); 0: it exists

    @property
    def deleted(self) -> bool:
        """The key does not exist in etcd (it was deleted, or never written)."""
        return self._deleted_at != 0

    @property
    def value(self) -> T:
        """The latest valid value; NotFoundError or the InvalidConfigError when there is none to give."""
        if self._deleted_at and self._on_delete == "raise":
            raise self._deleted_error()
        if not self._has_value:
            raise self.error or self._deleted_error()
        return self._value  # type: ignore[return-value]  # set together with _has_value

    def _deleted_error(self) -> NotFoundError:
        if self._has_value:
            return NotFoundError(f"config {self.key} was deleted at revision {self._deleted_at}")
        return NotFoundError(f"config {self.key} does not exist (etcd revision {self._deleted_at})")

    async def _apply_snapshot(self, kvs: Sequence[KeyValue], revision: int) -> None:
        await self._apply(kvs[0] if kvs else None, revision)

    async def _apply_events(self, events: Sequence[WatchEvent]) -> None:
        for event in events:
            await self._apply(event.kv if event.type == "put" else None, event.kv.mod_revision)

    async def _apply(self, kv: KeyValue | None, revision: int) -> None:
        """The key as it is at ``revision``: ``kv``, or absent."""
        if kv is None:
            if self._deleted_at:
                return
            self._deleted_at, self.error = revision, None
            log.info("config %s was deleted at revision %d", self.key, revision)
            await self._save([])
            if self._on_delete == "raise":
                self._raise_in_loops(self._deleted_error)
            return
        self._deleted_at = 0
        if self._has_value and kv.mod_revision <= self.revision:
            return  # delivered already: a re-read after a compaction, or etcd's copy of the cached value
        if self.error is not None and self.error.revision == kv.mod_revision:
            return  # refused and logged already
        try:
            value = await self._parse(self.key, kv.mod_revision, kv.value)
        except InvalidConfigError as error:
            self.error = error
            kept = f"keeping the value of revision {self.revision}" if self._has_value else "no valid value yet"
            log.warning("%s Not delivered; %s.", error, kept)
            return
        self._value, self._has_value, self.revision, self.error = value, True, kv.mod_revision, None
        self._text = kv.value.decode()
        await self._save([CachedValue(self.key, self._text, self.revision)])
        await self._deliver(value)


class LiveConfigMap(Live[Mapping[str, T]]):
    """Every key under a prefix kept current: ``value`` maps each key (in full) to its latest valid value;
    a deleted key leaves the mapping. ``revision`` is the etcd revision the mapping reflects; ``errors``
    maps each key whose newest value was refused to why (its last valid value stays), ``error`` is the
    latest of them. ``async for mapping in live`` and ``on_change`` get a new read-only mapping after each
    batch of changes etcd reports together."""

    def __init__(self, prefix: str, parse: Parse[T], cache_file: Path | None) -> None:
        super().__init__(prefix, True, cache_file)
        self.prefix = prefix
        self._parse = parse
        self._values: dict[str, T] = {}
        self._held: dict[str, CachedValue] = {}  # the text and revision of each value in _values
        self._errors: dict[str, InvalidConfigError] = {}
        self._view: Mapping[str, T] = MappingProxyType({})

    @property
    def value(self) -> Mapping[str, T]:
        return self._view

    @property
    def errors(self) -> Mapping[str, InvalidConfigError]:
        return MappingProxyType(dict(self._errors))

    @property
    def error(self) -> InvalidConfigError | None:
        return next(reversed(self._errors.values()), None)

    async def _apply_snapshot(self, kvs: Sequence[KeyValue], revision: int) -> None:
        present = {show(kv.key) for kv in kvs}
        changed = False
        for key in [k for k in (*self._values, *self._errors) if k not in present]:
            changed |= self._remove(key)
        for kv in kvs:
            changed |= await self._put(kv)
        await self._changed(changed, revision)

    async def _apply_events(self, events: Sequence[WatchEvent]) -> None:
        changed = False
        for event in events:
            if event.type == "put":
                changed |= await self._put(event.kv)
            else:
                changed |= self._remove(show(event.kv.key))
        await self._changed(changed, events[-1].kv.mod_revision if events else self.revision)

    async def _changed(self, changed: bool, revision: int) -> None:
        self.revision = max(self.revision, revision)
        if changed:
            self._view = MappingProxyType(dict(self._values))
            await self._save(list(self._held.values()))
            await self._deliver(self._view)

    def _remove(self, key: str) -> bool:
        self._errors.pop(key, None)
        self._held.pop(key, None)
        return self._values.pop(key, None) is not None

    async def _put(self, kv: KeyValue) -> bool:
        key = show(kv.key)
        held = self._held.get(key)
        if held is not None and held.mod_revision >= kv.mod_revision:
            return False
        refused = self._errors.get(key)
        if refused is not None and refused.revision == kv.mod_revision:
            return False
        try:
            value = await self._parse(key, kv.mod_revision, kv.value)
        except InvalidConfigError as error:
            self._errors.pop(key, None)  # to the end: ``error`` is the latest
            self._errors[key] = error
            kept = f"keeping the value of revision {held.mod_revision}" if held else "the key is left out"
            log.warning("%s Not delivered; %s.", error, kept)
            return False
        self._errors.pop(key, None)
        self._values[key] = value
        self._held[key] = CachedValue(key, kv.value.decode(), kv.mod_revision)
        return True


@asynccontextmanager
async def following(live: L, etcd: EtcdClient, wait: float | None) -> AsyncIterator[L]:
    """``live`` kept current from etcd while the body runs. Entering waits ``wait`` seconds (None: no
    bound) for etcd's first answer, then starts from ``live.cache_file`` or raises UnavailableError."""
    what = "prefix" if live.is_prefix else "key"
    async with anyio.create_task_group() as tg:
        ready = anyio.Event()
        tg.start_soon(live._follow, etcd, ready)
        with anyio.move_on_after(wait):
            await ready.wait()
        started = ready.is_set() or await _start_from_cache(live, what, ready)
        raised: Exception | None = None
        if started:
            try:
                yield live
            except Exception as exc:  # the body's: re-raised below as it is, not in an exception group
                raised = exc
            finally:
                live._end()
        tg.cancel_scope.cancel()
    if raised is not None:
        raise raised
    if not started:  # raised here, outside the task group, so it is not wrapped in an exception group
        copy = f" and no usable cached copy in {live.cache_file} (the log says why)" if live.cache_file else ""
        raise UnavailableError(
            f"no answer from etcd at {etcd.endpoints} about {what} {live.watched} within {wait:g}s{copy}; "
            "start etcd (the log says what failed), or give watch a cache_file to start from."
        )


async def _start_from_cache(live: Live[Any], what: str, ready: anyio.Event) -> bool:
    if live.cache_file is None:
        return False
    cached = await read_cache(live.cache_file, live.watched, live.is_prefix)
    if cached is None:
        return False
    if await live._start_from_cache(cached, ready):
        log.warning(
            "etcd has not answered; %s %s starts from its cached copy in %s (revision %d) and follows etcd once "
            "it answers",
            what,
            live.watched,
            live.cache_file,
            cached.revision,
        )
    return True
