"""Which keys the kv tools may touch: allowed prefixes minus denied ones, as key ranges.

A range is ``(start, end)`` with ``end`` exclusive and ``None`` meaning "to the last key".
Reads intersect with the permitted ranges (listing ``""`` shows what is allowed); writes must lie
wholly inside them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ForbiddenKeyError

Range = tuple[bytes, bytes | None]


def prefix_range(prefix: bytes) -> Range:
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return (prefix, None)
    end[-1] += 1
    return (prefix, bytes(end))


def _before(a: bytes | None, b: bytes | None) -> bool:
    """a < b where None is +infinity."""
    if a is None:
        return False
    return b is None or a < b


def _min_end(a: bytes | None, b: bytes | None) -> bytes | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def intersect(a: Range, b: Range) -> Range | None:
    start = max(a[0], b[0])
    end = _min_end(a[1], b[1])
    return (start, end) if _before(start, end) else None


def subtract(ranges: Sequence[Range], cut: Range) -> list[Range]:
    out: list[Range] = []
    for start, end in ranges:
        if intersect((start, end), cut) is None:
            out.append((start, end))
            continue
        if start < cut[0]:
            out.append((start, cut[0]))
        if cut[1] is not None and _before(cut[1], end):
            out.append((cut[1], end))
    return out


def union(ranges: Sequence[Range]) -> list[Range]:
    merged: list[Range] = []
    for start, end in sorted(ranges, key=lambda r: r[0]):
        if merged and not _before(merged[-1][1], start):
            last_start, last_end = merged[-1]
            merged[-1] = (last_start, None if last_end is None or end is None else max(last_end, end))
        else:
            merged.append((start, end))
    return merged


def covers(ranges: Sequence[Range], inner: Range) -> bool:
    remaining = [inner]
    for r in ranges:
        remaining = subtract(remaining, r)
    return not remaining


def show(key: bytes) -> str:
    return key.decode(errors="backslashreplace")


class KeyPolicy:
    """allowed_prefixes minus denied_prefixes; ``internal_prefix`` is hidden from listings unless asked."""

    def __init__(self, allowed: Sequence[str], denied: Sequence[str] = (), internal_prefix: str = "") -> None:
        self.allowed = list(allowed)
        self.denied = list(denied)
        permitted = union([prefix_range(p.encode()) for p in allowed])
        for p in denied:
            permitted = subtract(permitted, prefix_range(p.encode()))
        self.permitted = permitted
        self.internal = prefix_range(internal_prefix.encode()) if internal_prefix else None

    def _refuse(self, what: str) -> ForbiddenKeyError:
        allowed = ", ".join(repr(p) for p in self.allowed) or "none"
        denied = f"; denied: {', '.join(repr(p) for p in self.denied)}" if self.denied else ""
        return ForbiddenKeyError(
            f"{what} is outside the allowed prefixes (allowed: {allowed}{denied}). "
            "Nothing was read or written; use a key under an allowed prefix."
        )

    def check_key(self, key: bytes) -> None:
        if not covers(self.permitted, (key, key + b"\0")):
            raise self._refuse(f"key {show(key)}")

    def check_prefix(self, prefix: bytes) -> None:
        """For writes over a prefix: all of it must be permitted."""
        if not covers(self.permitted, prefix_range(prefix)):
            raise self._refuse(f"prefix {show(prefix)!r}")

    def readable(self, prefix: bytes, *, include_internal: bool) -> list[Range]:
        """The ranges under ``prefix`` a listing may show, in key order."""
        wanted = prefix_range(prefix)
        ranges = [r for r in (intersect(wanted, p) for p in self.permitted) if r is not None]
        if not ranges:
            raise self._refuse(f"prefix {show(prefix)!r}")
        if self.internal is not None and not include_internal:
            ranges = subtract(ranges, self.internal)
        return ranges

    def writable(self, prefix: bytes, *, include_internal: bool) -> list[Range]:
        """The ranges a prefix-wide write (delete, replace import) touches; all of ``prefix`` must be permitted."""
        self.check_prefix(prefix)
        ranges = [prefix_range(prefix)]
        if self.internal is not None and not include_internal:
            ranges = subtract(ranges, self.internal)
        return ranges
