"""The audit trail in etcd as a hash chain, and the check ``audit_log`` runs over it.

Layout under the audit prefix (``<registry_prefix>audit/``)::

    head                    {"seq": N, "hash": sha256 of entry N's stored bytes, "first": oldest seq kept}
    entry/<seq, 20 digits>  the entry's JSON with "seq" and "prev_hash" (sha256 of entry seq-1's stored bytes)

A server appends entry N+1 and moves the head in one etcd transaction that holds only while the head
is the one it read, so servers sharing one etcd take turns and none overwrites another's entry; the
oldest entries are trimmed in that same transaction, and the head's ``first`` moves with them. So
the entries from ``first`` to ``seq`` are all there, each naming the hash of the one before, and the
head names the hash of the newest.

What the check shows: an entry edited, replaced, put on a lease, removed (from the middle, the start
or the end), or added without the head (forged) by anyone who wrote to etcd behind the servers' back.
What it cannot show: a writer who recomputes the hashes from the edit onwards and rewrites the head
too; anyone with write access to etcd can, since no secret is involved. The audit file's ``chain``
field (each line names the seq and hash etcd got) is the anchor outside etcd that catches that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from ..etcd import KeyValue, prefix_end
from .model import AuditEntry, ChainBreak, ChainedEntry, ChainProblem, ChainReport, TrailEntry

GENESIS = "0" * 64  # the prev_hash of entry 1
SEQ_DIGITS = 20
MAX_BREAKS = 100


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class ChainHead(BaseModel):
    seq: int
    hash: str
    first: int

    @classmethod
    def empty(cls) -> ChainHead:
        return cls(seq=0, hash=GENESIS, first=0)


class ChainLayout:
    """Keys of the chain under ``prefix`` (ending in '/')."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.head = f"{prefix}head".encode()
        self.entries = f"{prefix}entry/".encode()
        self.entries_end = prefix_end(self.entries)

    def entry(self, seq: int) -> bytes:
        return self.entries + f"{seq:0{SEQ_DIGITS}d}".encode()

    def seq_of(self, key: bytes) -> int | None:
        """The sequence number an entry key names; None for any other key."""
        suffix = key[len(self.entries) :] if key.startswith(self.entries) else b""
        return int(suffix) if len(suffix) == SEQ_DIGITS and suffix.isdigit() else None


def parse_head(raw: bytes) -> ChainHead | None:
    try:
        return ChainHead.model_validate_json(raw)
    except ValidationError:
        return None


def _parse(raw: bytes) -> ChainedEntry | AuditEntry | None:
    for model in (ChainedEntry, AuditEntry):
        try:
            return model.model_validate_json(raw)
        except ValidationError:
            continue
    return None


def _text(key: bytes) -> str:
    return key.decode(errors="backslashreplace")


@dataclass(frozen=True)
class _Link:
    seq: int
    prev_hash: str
    hash: str


class ChainCheck:
    """Checks the entries fed to ``add`` in key order, one at a time (memory stays flat however many)."""

    def __init__(self, layout: ChainLayout, head: KeyValue | None) -> None:
        self.layout = layout
        self.breaks: list[ChainBreak] = []
        self.checked = 0
        self.head = parse_head(head.value) if head is not None else None
        self.first: _Link | None = None  # the first and last entries inside the head's range
        self.last: _Link | None = None
        self.expected: int | None = self.head.first if self.head is not None else None
        self.broken: set[int] = set()  # seq k: entry k's successor (or the head) recorded another hash
        self.any_entry = False
        if head is None:
            return
        if self.head is None:
            self._flag("head", None, layout.head, "the chain's head is damaged: the newest entries cannot be checked")
        elif head.lease:
            self._flag("head", None, layout.head, f"the chain's head is on lease {head.lease:x}: it would disappear")

    def _flag(self, problem: ChainProblem, seq: int | None, key: bytes, detail: str) -> None:
        self.breaks.append(ChainBreak(problem=problem, seq=seq, key=_text(key), detail=detail))

    def add(self, kv: KeyValue) -> tuple[TrailEntry | None, bool]:
        """Check one stored entry. Returns it as audit_log shows it (None: it is no audit entry at all), and
        whether it has its place in the chain (False: forged, it sits outside the head's range)."""
        self.checked += 1
        self.any_entry = True
        seq, entry, stored_hash = self.layout.seq_of(kv.key), _parse(kv.value), digest(kv.value)
        if entry is None:
            self._flag("unreadable", seq, kv.key, "not an audit entry (it does not parse), so it is not shown")
            return None, False
        if not isinstance(entry, ChainedEntry):
            self._flag("forged", seq, kv.key, "has no place in the chain (no seq, no prev_hash): no server wrote it")
            return TrailEntry(**entry.model_dump(), seq=None, hash=stored_hash), False
        shown = TrailEntry(**entry.model_dump(), hash=stored_hash)
        if seq != entry.seq:
            where = f"seq {seq}" if seq is not None else "a key that is no sequence number"
            self._flag("forged", seq, kv.key, f"claims seq {entry.seq} but is stored at {where}")
            return shown, False
        if kv.lease:
            self._flag(
                "edited",
                seq,
                kv.key,
                f"is on lease {kv.lease:x}: it disappears when the lease expires (servers never write entries so)",
            )
        return shown, self._follow(_Link(seq, entry.prev_hash, stored_hash), kv.key)

    def _follow(self, link: _Link, key: bytes) -> bool:
        head = self.head
        if head is not None and link.seq < head.first:
            self._flag(
                "forged",
                link.seq,
                key,
                f"is older than the oldest entry kept (seq {head.first}); trimming deletes those, so it was put later",
            )
            return False
        if head is not None and link.seq > head.seq:
            self._flag("forged", link.seq, key, f"comes after the newest entry the head records (seq {head.seq})")
            return False
        if self.expected is not None and link.seq > self.expected:
            self._removed(self.expected, link.seq - 1)
        elif self.last is not None and link.prev_hash != self.last.hash:
            self.broken.add(self.last.seq)
        self.first = self.first or link
        self.last, self.expected = link, link.seq + 1
        return True

    def _removed(self, first: int, last: int) -> None:
        which = f"entry {first} is" if first == last else f"entries {first}-{last} ({last - first + 1}) are"
        self._flag("removed", first, self.layout.entry(first), f"{which} missing from the chain")

    def report(self) -> ChainReport:
        head, last = self.head, self.last
        if head is None and self.any_entry and not any(b.problem == "head" for b in self.breaks):
            self._flag(
                "head", None, self.layout.head, "the chain's head is missing: the newest entries cannot be checked"
            )
        if head is not None and head.seq >= max(head.first, 1):
            if last is None or last.seq < head.seq:
                self._removed(last.seq + 1 if last is not None else head.first, head.seq)
            elif last.hash != head.hash:
                self.broken.add(last.seq)
        # An entry whose links on both sides are broken was replaced; a single broken link means the
        # entry before it changed (its own link to its predecessor still holds).
        replaced = {seq for seq in self.broken if seq - 1 in self.broken}
        for seq in sorted(replaced):
            self._flag("forged", seq, self.layout.entry(seq), "matches neither the entry before it nor the one after")
        for seq in sorted(self.broken - replaced - {s - 1 for s in replaced}):
            successor = "the head" if head is not None and seq == head.seq else f"entry {seq + 1}"
            detail = f"was changed after it was written: its hash is not the one {successor} recorded"
            self._flag("edited", seq, self.layout.entry(seq), detail)
        breaks = sorted(self.breaks, key=lambda b: (b.seq is None, b.seq or 0, b.key))
        return ChainReport(
            intact=not breaks,
            entries=self.checked,
            first_seq=head.first if head is not None else (self.first.seq if self.first is not None else None),
            last_seq=head.seq if head is not None else (last.seq if last is not None else None),
            breaks=breaks[:MAX_BREAKS],
            breaks_count=len(breaks),
        )


def verify(layout: ChainLayout, head: KeyValue | None, kvs: Iterable[KeyValue]) -> tuple[list[TrailEntry], ChainReport]:
    """Every readable entry (in key order) and the report: ``ChainCheck`` over a whole list."""
    check = ChainCheck(layout, head)
    shown = [entry for kv in kvs if (entry := check.add(kv)[0]) is not None]
    return shown, check.report()
