"""Awaiting grpc.aio operations so that anyio's cancellation and timeouts keep working.

When a task awaiting a grpc.aio call is cancelled, grpc raises a CancelledError of its own, without
the message anyio marks its cancellations with. anyio's cancel scopes then do not recognise it: a
``fail_after`` would not turn into TimeoutError, and a cancelled task group could swallow or leak
the cancellation. So the operation runs in a task of its own; only that task sees grpc's error, and
this task is cancelled (or times out) the ordinary way.

A deadline is only fair to etcd while this process's event loop runs. When something stalls the
loop (a big value parsed, thousands of results rendered), etcd's answer arrives in time and waits
unread, or the request itself waits to be sent, while the deadline passes: the call would report
"etcd unavailable" for an etcd that answers at once. So the deadline counts only time the loop was
free: the wait goes in ticks of ``TICK`` seconds, and whatever a tick overran (the loop was busy
elsewhere) moves the deadline on. A loop stalled for more than ``MAX_STALL`` seconds within one call
ends it with ``LoopStalledError``, which says so instead of blaming etcd. This is also why the
etcd3aio calls get no deadline of their own (their ``asyncio.timeout`` would fire in the same way):
``within`` here is the only one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

TICK = 0.1  # seconds; a call that answers sooner never ticks
MAX_STALL = 60.0  # seconds of stalled loop one call tolerates before it gives up


class LoopStalledError(TimeoutError):
    """The deadline passed while this process's event loop was stalled: etcd may well have answered."""

    def __init__(self, stalled: float) -> None:
        self.stalled = stalled
        super().__init__(f"the event loop was stalled for {stalled:.1f}s")


async def await_rpc(operation: Awaitable[T], within: float | None = None) -> T:
    """``await operation``, cancelled by our own cancellation or after ``within`` seconds of a running
    event loop (TimeoutError; LoopStalledError when the loop kept stalling past the deadline)."""
    task = asyncio.ensure_future(operation)
    try:
        await _wait(task, within)
    except BaseException:
        _abandon(task)
        raise
    return task.result()


async def _wait(task: asyncio.Future[T], within: float | None) -> None:
    if within is None:
        await asyncio.wait({task})
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    stalled = 0.0
    while (remaining := deadline - loop.time()) > 0:
        step = min(TICK, remaining)
        asked = loop.time()
        done, _ = await asyncio.wait({task}, timeout=step)
        if done:
            return
        overran = loop.time() - asked - step  # the loop ran something else meanwhile: not etcd's time
        if overran > 0:
            stalled += overran
            deadline += overran
            if stalled > MAX_STALL:
                raise LoopStalledError(stalled)
    raise TimeoutError


def _abandon(task: asyncio.Future[T]) -> None:
    task.cancel()
    # Its outcome (grpc's CancelledError or a late error) is of no interest; retrieving it keeps
    # asyncio from logging "exception was never retrieved".
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
