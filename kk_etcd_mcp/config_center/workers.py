"""Big values are parsed and rendered in worker threads, so one client's value cannot stall the others.

Parsing a YAML value of 1 MiB takes the safe loader seconds. On the event loop that would stall
every other client's call (and, before the etcd adapter counted only loop time, made their etcd calls
miss their deadlines). Values over ``OFF_LOOP_BYTES`` are handled in a worker thread instead, at most
``WORKER_THREADS`` at once: a burst of big values queues for them, and the loop keeps a fair share of
the interpreter (the parsers hold the GIL, so more threads would only slow the loop down).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio

T = TypeVar("T")

OFF_LOOP_BYTES = 32 * 1024  # below this a value parses in about a millisecond: not worth a thread
WORKER_THREADS = 2


class ValueWorkers:
    """Runs CPU-heavy value work (``fn(*args)``) on the loop when small, in a bounded pool when big."""

    def __init__(self, threads: int = WORKER_THREADS) -> None:
        self._limiter = anyio.CapacityLimiter(threads)

    async def run(self, size: int | None, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)``; ``size`` is the value's size in bytes or characters (None: unknown, a structure)."""
        if size is not None and size <= OFF_LOOP_BYTES:
            return fn(*args)
        # abandon_on_cancel: a cancelled call (client gone, server stopping) does not wait for the parse.
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter, abandon_on_cancel=True)
