"""The last minute of a hub's checks, for ``hub_status``: checks per second and p99 lateness. No I/O.

Six buckets of ten seconds each; each keeps its count and a uniform sample of at most ``SAMPLE`` lateness
values (reservoir sampling), so the memory stays the same at 10 or 10,000 checks a second.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

BUCKET_SECONDS = 10.0
BUCKETS = 6
SAMPLE = 1000


@dataclass
class _Bucket:
    start: float
    count: int = 0
    sample: list[float] = field(default_factory=list)


class RecentChecks:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: list[_Bucket] = []

    def add(self, lateness: float) -> None:
        now = self._clock()
        if not self._buckets or now - self._buckets[-1].start >= BUCKET_SECONDS:
            self._buckets.append(_Bucket(now))
            del self._buckets[:-BUCKETS]
        bucket = self._buckets[-1]
        bucket.count += 1
        if len(bucket.sample) < SAMPLE:
            bucket.sample.append(lateness)
        elif (slot := random.randrange(bucket.count)) < SAMPLE:
            bucket.sample[slot] = lateness

    def _live(self) -> list[_Bucket]:
        horizon = self._clock() - BUCKET_SECONDS * BUCKETS
        return [b for b in self._buckets if b.start >= horizon]

    def per_second(self) -> float:
        """Checks per second over the buckets of the last minute (since the first, when younger)."""
        live = self._live()
        if not live:
            return 0.0
        span = max(self._clock() - live[0].start, 1.0)
        return sum(b.count for b in live) / span

    def p99(self) -> float:
        """The 99th percentile of the lateness (seconds) over the last minute; 0.0 with no checks."""
        values = sorted(v for b in self._live() for v in b.sample)
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(0.99 * len(values)))]
