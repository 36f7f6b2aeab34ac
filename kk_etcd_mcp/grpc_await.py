"""Awaiting grpc.aio operations so that anyio's cancellation and timeouts keep working.

When a task awaiting a grpc.aio call is cancelled, grpc raises a CancelledError of its own, without
the message anyio marks its cancellations with. anyio's cancel scopes then do not recognise it: a
``fail_after`` would not turn into TimeoutError, a hub stopping a check loop would see the loop's task
die, and a cancelled task group could swallow or leak the cancellation. So this task never awaits the
grpc operation itself: it waits on a future of its own (a grpc.aio call's done callback sets it) or on
a task that runs the operation (a coroutine such as ``call.read()`` or an etcd3aio request). Only that
task, or the call, sees grpc's error; this task is cancelled (or times out) the ordinary way, and
cancels the operation in turn.

A deadline is only fair to the other side while this process's event loop runs. When something stalls
the loop (a big value parsed, thousands of results rendered), the answer arrives in time and waits
unread, or the request itself waits to be sent, while the deadline passes: the call would report
"unavailable" for a server that answers at once. So the deadline counts only time the loop was free:
the wait goes in ticks of ``TICK`` seconds, and whatever a tick overran (the loop was busy elsewhere)
moves the deadline on. A loop stalled for more than ``MAX_STALL`` seconds within one call ends it with
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
        except TimeoutError:
            _abandon(task)
            await asyncio.sleep(0)  # let it see its cancellation (and clean up) before our caller goes on
            raise
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


async def _wait(operation: _Call, within: float | None) -> None:
    """Until ``operation`` (a task or a grpc.aio call) is done; TimeoutError after ``within`` seconds of a
    running loop. This task sleeps on a future of its own (``_Waker``), so a cancellation cancels only
    that future and grpc's own CancelledError never reaches this task."""
    loop = asyncio.get_running_loop()
    waker = _Waker(loop)
    operation.add_done_callback(waker.done)
    if within is None:
        await waker.sleep(None)
        return
    deadline = loop.time() + within
    stalled = 0.0
    while (remaining := deadline - loop.time()) > 0:
        step = min(TICK, remaining)
        asked = loop.time()
        if await waker.sleep(step):
            return
        overran = loop.time() - asked - step  # the loop ran something else meanwhile: not the server's time
        if overran > 0:
            stalled += overran
            deadline += overran
            if stalled > MAX_STALL:
                raise LoopStalledError(stalled)
    raise TimeoutError


class _Waker:
    """The future a waiting task sleeps on, set when the operation is done or a tick is up. Lighter than
    ``asyncio.wait`` (no sets, no callback added and removed per tick): it runs for every etcd request
    and every gRPC health check."""

    __slots__ = ("_future", "_loop", "ended")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] = loop.create_future()
        self.ended = False

    def done(self, _: object) -> None:
        """The operation's done callback."""
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        if not self._future.done():  # cancelled with the waiting task, or a tick and the end at once
            self._future.set_result(None)

    async def sleep(self, seconds: float | None) -> bool:
        """Until the operation is done or ``seconds`` are up (None: no limit); whether it is done."""
        if not self.ended:
            tick = None if seconds is None else self._loop.call_later(seconds, self._wake)
            try:
                await self._future
            finally:
                if tick is not None:
                    tick.cancel()
            if not self.ended:
                self._future = self._loop.create_future()
        return self.ended


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
