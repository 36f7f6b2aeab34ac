"""Backoff: the delays between retries, growing with jitter up to a cap; the one used everywhere.

"Decorrelated jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter"): each delay is drawn
uniformly from ``[initial, 3 * previous delay]`` and capped, so it grows about threefold per failure
on average, is never shorter than ``initial`` (no retry storm against a server that just came back), and
retries of many clients that failed together (every watch of a server, every hub after an etcd restart)
spread out instead of arriving in lockstep. ``reset()`` after a success starts over at ``initial``.
"""

from __future__ import annotations

import random

import anyio


class Backoff:
    """``delay = backoff.next_delay()`` after each failure, ``backoff.reset()`` after a success."""

    def __init__(self, initial: float, cap: float, *, rng: random.Random | None = None) -> None:
        if initial <= 0 or cap <= 0:
            raise ValueError("backoff delays must be positive")
        self.initial = min(initial, cap)
        self.cap = cap
        self._rng = rng or random.Random()
        self._previous = self.initial

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt."""
        self._previous = min(self.cap, self._rng.uniform(self.initial, self._previous * 3))
        return self._previous

    def reset(self) -> None:
        """The last attempt succeeded: the next failure waits about ``initial`` again."""
        self._previous = self.initial

    async def sleep(self) -> float:
        """Wait ``next_delay()`` seconds; returns how long."""
        delay = self.next_delay()
        await anyio.sleep(delay)
        return delay
