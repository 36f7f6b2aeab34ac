"""Awaiting grpc.aio operations so that anyio's cancellation and timeouts keep working.

When a task awaiting a grpc.aio call is cancelled, grpc raises a CancelledError of its own, without
the message anyio marks its cancellations with. anyio's cancel scopes then do not recognise it: a
``fail_after`` would not turn into TimeoutError, and a cancelled task group could swallow or leak
the cancellation. So the operation runs in a task of its own; only that task sees grpc's error, and
this task is cancelled (or times out) the ordinary way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def await_rpc(operation: Awaitable[T], within: float | None = None) -> T:
    """``await operation``, cancelled by our own cancellation or after ``within`` seconds (TimeoutError)."""
    task = asyncio.ensure_future(operation)
    try:
        done, _ = await asyncio.wait({task}, timeout=within)
    except BaseException:
        _abandon(task)
        raise
    if not done:
        _abandon(task)
        raise TimeoutError
    return task.result()


def _abandon(task: asyncio.Future[T]) -> None:
    task.cancel()
    # Its outcome (grpc's CancelledError or a late error) is of no interest; retrieving it keeps
    # asyncio from logging "exception was never retrieved".
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
