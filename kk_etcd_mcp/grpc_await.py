"""Awaiting grpc.aio operations so that anyio's cancellation and timeouts keep working.

When a task awaiting a grpc.aio call is cancelled, grpc raises a CancelledError of its own, without
the message anyio marks its cancellations with. anyio's cancel scopes then do not recognise it: a
``fail_after`` would not turn into TimeoutError, a hub stopping a check loop would see the loop's task
die, and a cancelled task group could swallow or leak the cancellation. So this task never awaits the
grpc operation itself: it waits on a future of its own (a grpc.aio call's done callback sets it) or on
a task that runs the operation (a coroutine such as ``call.read()`` or an etcd3aio request). Only that
task, or the call, sees grpc's error; this task is cancelled (or times out) the ordinary way, and
cancels the operation in turn. Our own coroutines (the etcd KV channel on ``h2grpc``) raise no such
error: ``await_within`` awaits them in the caller's task, with the same deadline and no task to make.

A deadline is only fair to the other side while this process's event loop runs. When something stalls
the loop (a big value parsed, thousands of results rendered), the answer arrives in time and waits
unread, or the request itself waits to be sent, while the deadline passes: the call would report
"unavailable" for a server that answers at once. So the deadline (``LoopTimeDeadline``) counts only time
the loop was free: it ticks every ``TICK`` seconds, and whatever a tick came late (the loop was busy
elsewhere) moves the deadline on. A loop stalled for more than ``MAX_STALL`` seconds within one call ends it with
``LoopStalledError``, which says so instead of blaming the server. This is also why the etcd3aio calls
get no deadline of their own (their ``asyncio.timeout`` would fire in the same way): ``within`` here is
the only one.

Used by the etcd adapter and by the gRPC health probe; it imports neither etcd3aio nor grpc.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import suppress
from typing import Any, Protocol, TypeVar, cast

import anyio

T = TypeVar("T")

TICK = 0.1  # seconds; a call that answers sooner never ticks
MAX_STALL = 60.0  # seconds of stalled loop one call tolerates before it gives up


class LoopStalledError(TimeoutError):
    """The deadline passed while this process's event loop was stalled: the server may well have answered."""

    def __init__(self, stalled: float) -> None:
        self.stalled = stalled
        super().__init__(f"the event loop was stalled for {stalled:.1f}s")


class _Call(Protocol):
    """What a grpc.aio call (or an asyncio future) offers besides being awaitable."""

    def add_done_callback(self, callback: Any) -> None: ...

    def cancel(self) -> bool: ...


async def await_grpc(operation: Awaitable[T], within: float | None = None) -> T:
    """``await operation``, cancelled by our own cancellation or after ``within`` seconds of a running
    event loop (TimeoutError; LoopStalledError when the loop kept stalling past the deadline).

    ``operation`` is a coroutine (run in a task of its own) or a grpc.aio call (waited for through its
    done callback: a health check per instance and interval costs no extra task).
    """
    if asyncio.iscoroutine(operation) or not hasattr(operation, "add_done_callback"):
        task = asyncio.ensure_future(operation)
        try:
            await _wait(task, within)
        except BaseException:
            _abandon(task)
            raise
        return task.result()
    call = cast(_Call, operation)
    try:
        await _wait(call, within)
    except BaseException:
        call.cancel()
        raise
    return await operation  # done: returns (or raises grpc's error) at once


async def await_within(operation: Awaitable[T], within: float | None = None) -> T:
    """``await operation`` in this task, with ``await_grpc``'s deadline: for our own coroutines (the etcd
    KV channel), which raise no CancelledError of grpc's and so need no task of their own (30-50 us less
    CPU per request). Timed out, ``operation`` has been cancelled and has cleaned up when this raises."""
    if within is None:
        return await operation
    with LoopTimeDeadline(within):
        return await operation


async def _wait(operation: _Call, within: float | None) -> None:
    """Until ``operation`` (a task or a grpc.aio call) is done. This task sleeps on a future of its own,
    set by the operation's done callback, so a cancellation cancels only that future and grpc's own
    CancelledError never reaches this task."""
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake(_: object) -> None:
        if not woken.done():  # cancelled with this task meanwhile
            woken.set_result(None)

    operation.add_done_callback(wake)
    if within is None:
        await woken
        return
    with LoopTimeDeadline(within):
        await woken


class LoopTimeDeadline:
    """``with LoopTimeDeadline(seconds):`` cancels the current task once ``seconds`` of a running event loop
    have passed and raises TimeoutError (LoopStalledError past ``MAX_STALL`` seconds of stalls), as
    ``asyncio.timeout`` does. It ticks every ``TICK`` seconds; whatever a tick came late (the loop was
    busy elsewhere) moves the deadline on. One timer handle at a time: it runs for every etcd request."""

    __slots__ = ("_asked", "_cancelling", "_expired", "_handle", "_left", "_loop", "_stalled", "_step", "_task")

    def __init__(self, seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("LoopTimeDeadline needs a task")
        self._task = task
        self._left = seconds
        self._stalled = 0.0
        self._expired: TimeoutError | None = None
        self._cancelling = 0
        self._asked = self._step = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> LoopTimeDeadline:
        self._cancelling = self._task.cancelling()
        self._arm()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
        # Ours only when no other cancellation is pending (the caller's own scope wins), as asyncio.timeout.
        expired = self._expired is not None and self._task.uncancel() <= self._cancelling
        if expired and exc_type is asyncio.CancelledError:
            assert self._expired is not None
            raise self._expired from None

    def _arm(self) -> None:
        self._step = min(TICK, max(self._left, 0.0))
        self._asked = self._loop.time()
        self._handle = self._loop.call_later(self._step, self._tick)

    def _tick(self) -> None:
        overran = self._loop.time() - self._asked - self._step  # the loop ran something else: not their time
        if overran > 0:
            self._stalled += overran
            if self._stalled > MAX_STALL:
                self._expire(LoopStalledError(self._stalled))
                return
        self._left -= self._step
        if self._left <= 0:
            self._expire(TimeoutError())
            return
        self._arm()

    def _expire(self, error: TimeoutError) -> None:
        self._handle = None
        self._expired = error
        self._task.cancel()


async def end_call(call: Any) -> None:
    """Cancel a grpc.aio streaming call and let grpc finish it on this event loop (shielded, at most a
    second): its last completion events would otherwise be delivered later, possibly to a loop that is
    closed by then."""
    call.cancel()
    with anyio.CancelScope(shield=True), suppress(TimeoutError):
        await await_grpc(call.code(), within=1)


def _abandon(task: asyncio.Future[T]) -> None:
    task.cancel()
    # Its outcome (grpc's CancelledError or a late error) is of no interest; retrieving it keeps
    # asyncio from logging "exception was never retrieved".
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
