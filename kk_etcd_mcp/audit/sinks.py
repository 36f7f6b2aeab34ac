"""Where audit entries go: a JSON-lines stream (a file, or stderr), and etcd as a bounded hash chain.

In etcd the entries form a hash chain (layout and what it proves: ``chain.py``), appended in one
transaction per entry: the entry, the head, and past ``max_entries`` the deletion of the oldest (a
tenth at a time, so the count never exceeds ``max_entries`` and most writes trim nothing).
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import anyio

from ..errors import ConflictError
from ..etcd import Compare, Delete, EtcdClient, Get, KeyValue, Put, RangePage, TxnResult
from .chain import ChainCheck, ChainHead, ChainLayout, digest, parse_head
from .model import AuditEntry, ChainedEntry, ChainLink, ChainReport, TrailEntry

log = logging.getLogger(__name__)

PAGE_SIZE = 500
MAX_ATTEMPTS = 50  # appends lost to other servers in a row before giving up on one entry


# JSON leaves these unescaped, yet line readers (Python's splitlines, many log shippers) break lines at
# them: escaped, a hostile key or value cannot split one audit entry into two lines.
_LINE_BREAKS_ESCAPED = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class JsonLinesSink:
    """One JSON object per line, flushed at once. With stdio, stderr is right: stdout carries MCP.

    Lines are written in a worker thread (a slow disk must not stall the event loop), one at a time and
    in the order ``write`` was called: the lock hands them over first come, first served.
    """

    def __init__(self, stream: TextIO, where: str) -> None:
        self.stream = stream
        self.where = where
        self._lock = anyio.Lock()

    @classmethod
    def open(cls, path: Path | None) -> JsonLinesSink:
        """Append to ``path`` (created readable by its owner only), or stderr when None. Raises OSError."""
        if path is None:
            return cls(sys.stderr, "stderr")
        path.touch(mode=0o600, exist_ok=True)
        return cls(path.open("a", encoding="utf-8", buffering=1), str(path))

    async def write(self, entry: AuditEntry, link: ChainLink | None = None) -> None:
        """``link``: where etcd keeps the entry; the line then ends with ``"chain": {"seq", "hash"}``.
        Raises OSError (or ValueError for a closed stream) when the line cannot be written."""
        line = entry.model_dump_json()
        if link is not None:
            line = f'{line[:-1]},"chain":{link.model_dump_json()}}}'
        line = line.translate(_LINE_BREAKS_ESCAPED) + "\n"
        async with self._lock:
            await anyio.to_thread.run_sync(self._write_line, line)

    def _write_line(self, line: str) -> None:
        self.stream.write(line)
        self.stream.flush()


@dataclass(frozen=True)
class _Tip:
    """The head as this server last saw it, and the head key's mod_revision then (0: there was none)."""

    head: ChainHead
    mod_revision: int


class EtcdAuditSink:
    def __init__(self, etcd: EtcdClient, prefix: str, max_entries: int) -> None:
        self.etcd = etcd
        self.layout = ChainLayout(prefix)
        self.max_entries = max_entries
        self.trim_batch = max(1, max_entries // 10)
        self._tip: _Tip | None = None  # None: read it from etcd first (at start, and after a failed append)
        self._lock = anyio.Lock()  # this server's own calls append one at a time; other servers, by the txn

    async def write(self, entry: AuditEntry) -> ChainLink:
        """Append ``entry`` to the chain; returns where it went. Raises KkEtcdError when etcd fails."""
        async with self._lock:
            for _ in range(MAX_ATTEMPTS):
                tip = self._tip or await self._read_tip()
                self._tip = None
                link, result = await self._append(entry, tip)
                if link is not None:
                    return link
                self._tip = await self._after_conflict(tip, result)
        raise ConflictError(
            f"the audit entry was not appended in etcd: {MAX_ATTEMPTS} other appends came first; it is in the file."
        )

    async def _append(self, entry: AuditEntry, tip: _Tip) -> tuple[ChainLink | None, TxnResult]:
        seq = tip.head.seq + 1
        raw = ChainedEntry(**entry.model_dump(), seq=seq, prev_hash=tip.head.hash).model_dump_json().encode()
        key = self.layout.entry(seq)
        first = tip.head.first or seq
        ops: list[Put | Delete] = [Put(key, raw)]
        if seq - first + 1 > self.max_entries:
            keep_from = seq - (self.max_entries - self.trim_batch) + 1
            ops.append(Delete(self.layout.entry(first), self.layout.entry(keep_from)))
            first = keep_from
        head = ChainHead(seq=seq, hash=digest(raw), first=first)
        ops.append(Put(self.layout.head, head.model_dump_json().encode()))
        result = await self.etcd.txn(
            [Compare(self.layout.head, "mod", "==", tip.mod_revision), Compare(key, "version", "==", 0)],
            ops,
            [Get(self.layout.head)],
        )
        if not result.succeeded:
            return None, result
        self._tip = _Tip(head, result.revision)
        return ChainLink(seq=seq, hash=head.hash), result

    async def _read_tip(self) -> _Tip:
        page = await self.etcd.range(self.layout.head)
        return await self._tip_from(page)

    async def _after_conflict(self, tip: _Tip, result: TxnResult) -> _Tip:
        page = result.results[0]
        assert isinstance(page, RangePage)
        if page.kvs and page.kvs[0].mod_revision != tip.mod_revision:
            return await self._tip_from(page)  # another server appended meanwhile: go after its entry
        # The head did not move, yet the next entry's key is taken: someone wrote there behind the servers'
        # back. Continue after the last entry there, linked to the head; audit_log reports the break.
        return await self._recover(page.kvs[0] if page.kvs else None)

    async def _tip_from(self, page: RangePage) -> _Tip:
        kv = page.kvs[0] if page.kvs else None
        head = parse_head(kv.value) if kv is not None else None
        if kv is None or head is None:
            return await self._recover(kv)  # no head (first use, or removed) or a damaged one
        return _Tip(head, kv.mod_revision)

    async def _recover(self, head_kv: KeyValue | None) -> _Tip:
        """A tip after the last entry in etcd, when the head is missing, damaged, or behind the entries."""
        mod_revision = head_kv.mod_revision if head_kv is not None else 0
        seqs = [seq async for seq in self._entry_seqs()]
        head = parse_head(head_kv.value) if head_kv is not None else None
        if not seqs:
            return _Tip(head or ChainHead.empty(), mod_revision)
        last = max(seqs)
        if head is not None and last <= head.seq:
            return _Tip(head, mod_revision)  # the taken key is gone again: just retry
        if head is not None:
            log.warning(
                "audit trail in etcd: entries after the head (seq %d) up to seq %d were not written by a server; "
                "appending after them, audit_log reports them",
                head.seq,
                last,
            )
            return _Tip(ChainHead(seq=max(last, head.seq), hash=head.hash, first=head.first), mod_revision)
        newest = await self.etcd.get(self.layout.entry(last))
        log.warning(
            "audit trail in etcd: the chain's head %s is missing or damaged; continuing after the last entry (seq %d)",
            self.layout.head.decode(errors="backslashreplace"),
            last,
        )
        chained = ChainHead(seq=last, hash=digest(newest.value) if newest else ChainHead.empty().hash, first=min(seqs))
        return _Tip(chained, mod_revision)

    async def _entry_seqs(self) -> AsyncIterator[int]:
        pages = self.etcd.range_pages(self.layout.entries, self.layout.entries_end, keys_only=True, page_size=PAGE_SIZE)
        async for page in pages:
            for kv in page.kvs:
                seq = self.layout.seq_of(kv.key)
                if seq is not None:
                    yield seq

    async def read(self, limit: int, tool: str | None = None) -> tuple[list[TrailEntry], ChainReport]:
        """The newest ``limit`` entries (of ``tool`` only, when given), newest first, and the check of the
        whole chain; head and entries are read at one revision. Entries without a place in the chain
        (forged: the report names them) come after all others, so they never push the newest real
        entries out of the page."""
        head = await self.etcd.range(self.layout.head)
        check = ChainCheck(self.layout, head.kvs[0] if head.kvs else None)
        newest: deque[TrailEntry] = deque(maxlen=limit)
        unplaced: list[TrailEntry] = []
        layout = self.layout
        pages = self.etcd.range_pages(layout.entries, layout.entries_end, revision=head.revision, page_size=PAGE_SIZE)
        async for page in pages:
            for kv in page.kvs:
                entry, placed = check.add(kv)
                if entry is None or (tool is not None and entry.tool != tool):
                    continue
                if placed:
                    newest.append(entry)
                elif len(unplaced) < limit:
                    unplaced.append(entry)
        return [*reversed(newest), *unplaced][:limit], check.report()
