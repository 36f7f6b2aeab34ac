"""Where audit entries go: a JSON-lines stream (a file, or stderr), and etcd with a bounded size.

In etcd an entry is ``<prefix><time in ns, 20 digits>-<8 hex>`` holding the entry's JSON, so keys sort
by time. Past ``max_entries`` the oldest are deleted in one range delete, a tenth at a time, so the
count never exceeds ``max_entries`` and most writes need no trimming.
"""

from __future__ import annotations

import sys
import uuid
from collections import deque
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from ..etcd import EtcdClient, prefix_end
from .model import AuditEntry

PAGE_SIZE = 500


class JsonLinesSink:
    """One JSON object per line, flushed at once. With stdio, stderr is right: stdout carries MCP."""

    def __init__(self, stream: TextIO, where: str) -> None:
        self.stream = stream
        self.where = where

    @classmethod
    def open(cls, path: Path | None) -> JsonLinesSink:
        """Append to ``path`` (created readable by its owner only), or stderr when None. Raises OSError."""
        if path is None:
            return cls(sys.stderr, "stderr")
        path.touch(mode=0o600, exist_ok=True)
        return cls(path.open("a", encoding="utf-8", buffering=1), str(path))

    def write(self, entry: AuditEntry) -> None:
        self.stream.write(entry.model_dump_json() + "\n")
        self.stream.flush()


class EtcdAuditSink:
    def __init__(self, etcd: EtcdClient, prefix: str, max_entries: int) -> None:
        self.etcd = etcd
        self.prefix = prefix.encode()
        self.end = prefix_end(self.prefix)
        self.max_entries = max_entries
        self.trim_batch = max(1, max_entries // 10)

    def key_for(self, entry: AuditEntry) -> bytes:
        stamp = int(entry.time.timestamp() * 1_000_000) * 1000  # ns, as µs: what a datetime holds
        return self.prefix + f"{stamp:020d}-{uuid.uuid4().hex[:8]}".encode()

    async def write(self, entry: AuditEntry) -> None:
        await self.etcd.put(self.key_for(entry), entry.model_dump_json().encode())
        await self.trim()

    async def count(self) -> int:
        return (await self.etcd.range(self.prefix, self.end, count_only=True)).count

    async def trim(self) -> None:
        """Delete the oldest entries past ``max_entries``, down to ``max_entries - trim_batch``."""
        surplus = await self.count() - self.max_entries
        if surplus <= 0:
            return
        oldest = await self.etcd.range(self.prefix, self.end, limit=surplus + self.trim_batch, keys_only=True)
        if oldest.kvs:
            await self.etcd.delete(self.prefix, oldest.kvs[-1].key + b"\0")

    async def read(self, limit: int, tool: str | None = None) -> list[AuditEntry]:
        """The newest ``limit`` entries (of ``tool`` only, when given), newest first."""
        newest: deque[AuditEntry] = deque(maxlen=limit)
        start, revision = self.prefix, 0
        while True:
            page = await self.etcd.range(start, self.end, limit=PAGE_SIZE, revision=revision)
            revision = revision or page.revision
            for kv in page.kvs:
                try:
                    entry = AuditEntry.model_validate_json(kv.value)
                except ValidationError:
                    continue  # not ours (or damaged): skip it rather than hide every other entry
                if tool is None or entry.tool == tool:
                    newest.append(entry)
            if not page.more or not page.kvs:
                break
            start = page.kvs[-1].key + b"\0"
        return list(reversed(newest))
