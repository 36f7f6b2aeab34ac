"""Which keys the kv tools may touch: allowed prefixes minus denied ones, as key ranges, and never
the reserved prefixes other parts of the server own (the registry's root, the audit trail).

A range is ``(start, end)`` with ``end`` exclusive and ``None`` meaning "to the last key".
Reads intersect with the permitted ranges (listing ``""`` shows what is allowed); writes must lie
wholly inside them. This is the one place every kv path (tools, resources, subscriptions, completions,
import/export, rollback, prefix deletes, leases) asks, so a rule here holds for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


def _always() -> bool:
    return True


@dataclass(frozen=True)
class ReservedPrefix:
    """Keys another part of the server owns, e.g. the service registry's root or the audit trail.

    The kv tools never write under ``prefix``; they read there only when ``may_read()`` says the current
    caller may read it through the tool that owns it. Listings skip these keys unless asked
    (``include_internal``). The phrases complete the refusals: "key k is in <what> ('<prefix>'), which
    the kv tools never change: <instead>. Nothing was written." and "..., which this client may read
    only through <readers>. Nothing was read."
    """

    prefix: str
    what: str  # "the service registry's keys"
    instead: str  # "use service_register or service_deregister"
    readers: str  # "audit_log (scope 'admin')"
    may_read: Callable[[], bool] = _always

    @property
    def range(self) -> Range:
        return prefix_range(self.prefix.encode())


class KeyPolicy:
    """Which keys the kv tools may read and write: allowed_prefixes minus denied_prefixes, and never
    into a reserved prefix (read there only with the owner's consent).

    Every kv path goes through one of: ``check_read`` (a key read), ``readable`` (a listing or export),
    ``check_write`` (a key written, leased or deleted), ``writable`` / ``check_write_prefix`` (a write
    over a prefix: prefix deletes, replace imports).
    """

    def __init__(
        self, allowed: Sequence[str], denied: Sequence[str] = (), reserved: Sequence[ReservedPrefix] = ()
    ) -> None:
        self.allowed = list(allowed)
        self.denied = list(denied)
        permitted = union([prefix_range(p.encode()) for p in allowed])
        for p in denied:
            permitted = subtract(permitted, prefix_range(p.encode()))
        self.permitted = permitted
        # Innermost first: a key under two reserved prefixes (the audit trail inside the registry's root)
        # is refused in the words of the inner one.
        self.reserved = sorted(reserved, key=lambda r: len(r.prefix.encode()), reverse=True)

    def _refuse(self, what: str) -> ForbiddenKeyError:
        allowed = ", ".join(repr(p) for p in self.allowed) or "none"
        denied = f"; denied: {', '.join(repr(p) for p in self.denied)}" if self.denied else ""
        return ForbiddenKeyError(
            f"{what} is outside the allowed prefixes (allowed: {allowed}{denied}). "
            "Nothing was read or written; use a key under an allowed prefix."
        )

    def _owner(self, inner: Range) -> ReservedPrefix | None:
        """The innermost reserved prefix that holds all of ``inner``."""
        return next((r for r in self.reserved if covers([r.range], inner)), None)

    @staticmethod
    def _refuse_write(what: str, owner: ReservedPrefix) -> ForbiddenKeyError:
        return ForbiddenKeyError(
            f"{what} is in {owner.what} ({owner.prefix!r}), which the kv tools never change: {owner.instead}. "
            "Nothing was written."
        )

    @staticmethod
    def _refuse_read(what: str, owner: ReservedPrefix) -> ForbiddenKeyError:
        return ForbiddenKeyError(
            f"{what} is in {owner.what} ({owner.prefix!r}), which this client may read only through "
            f"{owner.readers}. Nothing was read."
        )

    def check_read(self, key: bytes) -> None:
        inner = (key, key + b"\0")
        if not covers(self.permitted, inner):
            raise self._refuse(f"key {show(key)}")
        for owner in self.reserved:
            if covers([owner.range], inner) and not owner.may_read():
                raise self._refuse_read(f"key {show(key)}", owner)

    def check_write(self, key: bytes) -> None:
        inner = (key, key + b"\0")
        if not covers(self.permitted, inner):
            raise self._refuse(f"key {show(key)}")
        owner = self._owner(inner)
        if owner is not None:
            raise self._refuse_write(f"key {show(key)}", owner)

    def check_write_prefix(self, prefix: bytes) -> None:
        """For writes over a prefix: all of it must be permitted, and not all of it reserved
        (the reserved keys inside a wider prefix are left out, see ``writable``)."""
        wanted = prefix_range(prefix)
        if not covers(self.permitted, wanted):
            raise self._refuse(f"prefix {show(prefix)!r}")
        owner = self._owner(wanted)
        if owner is not None:
            raise self._refuse_write(f"prefix {show(prefix)!r}", owner)

    def readable(self, prefix: bytes, *, include_internal: bool) -> list[Range]:
        """The ranges under ``prefix`` a listing may show, in key order. Reserved keys only with
        ``include_internal``, and then only those the caller may read."""
        wanted = prefix_range(prefix)
        ranges = [r for r in (intersect(wanted, p) for p in self.permitted) if r is not None]
        if not ranges:
            raise self._refuse(f"prefix {show(prefix)!r}")
        for owner in self.reserved:
            if include_internal and owner.may_read():
                continue
            if include_internal and covers([owner.range], wanted):
                raise self._refuse_read(f"prefix {show(prefix)!r}", owner)
            ranges = subtract(ranges, owner.range)
        return ranges

    def writable(self, prefix: bytes) -> list[Range]:
        """The ranges a prefix-wide write (delete, replace import) touches: ``prefix`` minus the reserved keys."""
        self.check_write_prefix(prefix)
        ranges = [prefix_range(prefix)]
        for owner in self.reserved:
            ranges = subtract(ranges, owner.range)
        return ranges
