"""Token buckets per client: the one rate limiter of the HTTP guards (requests, sessions, bad tokens)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """``rate`` requests per second on average, ``burst`` at once."""

    rate: float
    burst: int
    level: float
    stamp: float

    def refill(self, now: float) -> None:
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float) -> float:
        """Take one request: 0 if allowed, else the seconds until one would be."""
        self.refill(now)
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / self.rate


class Buckets:
    """A token bucket per client key (a token name or an address), at most ``MAX_CLIENTS`` of them kept."""

    MAX_CLIENTS = 10_000  # beyond it, full (idle) buckets are dropped: a full bucket is what a new one is

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, client: str) -> float:
        """Take one for ``client``: 0 if allowed, else the seconds until one would be."""
        now = time.monotonic()
        return self._bucket(client, now).take(now)

    def empty(self, client: str) -> float:
        """0 while ``client`` has one to take (nothing is taken), else the seconds until it has."""
        now = time.monotonic()
        bucket = self._buckets.get(client)
        if bucket is None:
            return 0.0
        bucket.refill(now)
        return 0.0 if bucket.level >= 1 else (1 - bucket.level) / self.rate

    def _bucket(self, client: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.MAX_CLIENTS:
                self._drop_full(now)
            bucket = self._buckets[client] = TokenBucket(self.rate, self.burst, float(self.burst), now)
        return bucket

    def _drop_full(self, now: float) -> None:
        full_after = self.burst / self.rate
        for client in [c for c, b in self._buckets.items() if now - b.stamp >= full_after]:
            del self._buckets[client]


def per_minute(count: int) -> Buckets:
    """Buckets allowing ``count`` a minute: all of them at once, then one every 60/count seconds."""
    return Buckets(count / 60, count)
