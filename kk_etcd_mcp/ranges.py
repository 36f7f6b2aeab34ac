"""Ranges of the integers callers pass (revisions, TTLs, limits), checked before anything reaches etcd.

etcd's revisions, lease IDs and TTLs are 64-bit signed integers; a larger number does not fit its
protocol at all, so it is refused here with the range instead of failing deep in the client.
"""

from __future__ import annotations

from .errors import InvalidArgumentError

MAX_INT64 = 2**63 - 1
MAX_LEASE_TTL = 9_000_000_000  # etcd's lease.MaxLeaseTTL (about 285 years): etcd refuses longer leases


def shown_number(value: int | float) -> str:
    # str() of an integer over 4,300 digits raises; its size says enough
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"a number of about {int(value.bit_length() * 0.30103)} digits"
    return str(value)


def check_range(what: str, value: int, low: int, high: int, unit: str = "") -> int:
    """``value`` when ``low <= value <= high``; else InvalidArgumentError, e.g. "ttl must be at least 2 seconds,
    got 1". ``unit``: what the number counts, with its leading space (" seconds")."""
    if value < low:
        raise InvalidArgumentError(f"{what} must be at least {low}{unit}, got {shown_number(value)}")
    if value > high:
        raise InvalidArgumentError(f"{what} must be at most {high}{unit}, got {shown_number(value)}")
    return value
