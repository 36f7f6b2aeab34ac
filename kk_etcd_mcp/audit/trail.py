"""AuditTrail: records an entry in every sink; a failing sink is logged, never raised to the caller."""

from __future__ import annotations

import logging

import anyio

from ..errors import KkEtcdError
from .model import AuditEntry
from .sinks import EtcdAuditSink, JsonLinesSink

log = logging.getLogger(__name__)

ETCD_WRITE_TIMEOUT = 10.0


class AuditTrail:
    def __init__(self, file: JsonLinesSink, etcd: EtcdAuditSink | None = None) -> None:
        self.file = file
        self.etcd = etcd

    async def record(self, entry: AuditEntry) -> None:
        """Write ``entry`` everywhere. Shielded: a call that is being cancelled is still recorded."""
        with anyio.CancelScope(shield=True):
            try:
                self.file.write(entry)
            except (OSError, ValueError) as exc:  # ValueError: the stream was closed
                log.warning("audit entry for %s could not be written to %s: %s", entry.tool, self.file.where, exc)
            if self.etcd is None:
                return
            try:
                with anyio.fail_after(ETCD_WRITE_TIMEOUT):
                    await self.etcd.write(entry)
            except (KkEtcdError, TimeoutError) as exc:
                log.warning("audit entry for %s (%s) was not written to etcd: %s", entry.tool, entry.outcome, exc)
