"""AuditTrail: records an entry in every sink; a failing sink is logged, never raised to the caller.

etcd first, then the file: the file's line then names where etcd keeps the entry (its seq and hash in
the chain), which anchors the chain outside etcd. A failed or slow etcd delays the line by at most
``ETCD_WRITE_TIMEOUT``; it is written all the same.
"""

from __future__ import annotations

import logging

import anyio

from ..errors import KkEtcdError
from .model import AuditEntry, ChainLink
from .sinks import EtcdAuditSink, JsonLinesSink

log = logging.getLogger(__name__)

ETCD_WRITE_TIMEOUT = 10.0


class AuditTrail:
    """``values``: the ``audit_values`` setting, which ``redact`` applies when entries are made."""

    def __init__(self, file: JsonLinesSink, etcd: EtcdAuditSink | None = None, *, values: bool = False) -> None:
        self.file = file
        self.etcd = etcd
        self.values = values

    async def record(self, entry: AuditEntry) -> None:
        """Write ``entry`` everywhere. Shielded: a call that is being cancelled is still recorded."""
        with anyio.CancelScope(shield=True):
            link: ChainLink | None = None
            if self.etcd is not None:
                try:
                    with anyio.fail_after(ETCD_WRITE_TIMEOUT):
                        link = await self.etcd.write(entry)
                except (KkEtcdError, TimeoutError) as exc:
                    log.warning("audit entry for %s (%s) was not written to etcd: %s", entry.tool, entry.outcome, exc)
            try:
                await self.file.write(entry, link)
            except (OSError, ValueError) as exc:  # ValueError: the stream was closed
                log.warning("audit entry for %s could not be written to %s: %s", entry.tool, self.file.where, exc)
