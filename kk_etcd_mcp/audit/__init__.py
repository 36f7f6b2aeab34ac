"""The audit trail: one entry per mutating call, to a JSON-lines file and, if asked, to etcd.

Knows nothing of MCP: callers build an ``AuditEntry`` (arguments passed through ``redact`` first)
and hand it to an ``AuditTrail``, which never fails the call it records. In etcd the entries form a
hash chain that ``audit_log`` checks (``chain.py``).
"""

from .model import AuditEntry, AuditLogResult, ChainReport, Outcome, TrailEntry
from .redact import REDACTED, redact
from .sinks import EtcdAuditSink, JsonLinesSink
from .trail import AuditTrail

__all__ = [
    "REDACTED",
    "AuditEntry",
    "AuditLogResult",
    "AuditTrail",
    "ChainReport",
    "EtcdAuditSink",
    "JsonLinesSink",
    "Outcome",
    "TrailEntry",
    "redact",
]
