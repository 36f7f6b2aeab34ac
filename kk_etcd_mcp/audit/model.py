"""What one audit entry holds. The JSON field names are the audit file's format: keep them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

# ok: done. dry_run: only previewed, nothing written. refused: stopped before anything was done
# (scope, busy, not confirmed). error: failed; the message says whether anything was written.
Outcome = Literal["ok", "dry_run", "refused", "error"]

MAX_AFFECTED_SHOWN = 100


class AuditEntry(BaseModel):
    time: datetime = Field(description="When the call finished (UTC).")
    tool: str
    client: str = Field(description="The bearer token's name, 'stdio', or 'http' (HTTP without tokens).")
    arguments: dict[str, Any] = Field(
        description=(
            "The call's arguments as audit/redact.py lets them through: what the call acts on as given, what it "
            "writes as {bytes, sha256} (unless audit_values), passwords and secrets as '***', long values cut."
        )
    )
    outcome: Outcome
    error: str | None = Field(default=None, description="Why it was refused or failed.")
    affected: list[str] = Field(
        default_factory=list,
        description="Keys written or deleted (for access tools user:<name> / role:<name> / auth), at most 100.",
    )
    affected_count: int = Field(default=0, description="How many were affected in all.")
    revision: int | None = Field(default=None, description="etcd revision after the change, when it made one.")
    duration_ms: float = 0.0


class ChainLink(BaseModel):
    """An entry's place in the chain kept in etcd; the audit file repeats it, anchoring the chain outside etcd."""

    seq: int = Field(description="Its sequence number in etcd (1, 2, ...).")
    hash: str = Field(description="sha256 (hex) of the entry's bytes as stored in etcd.")


class ChainedEntry(AuditEntry):
    """An entry as stored in etcd: the entry, its sequence number and the hash of the entry before it."""

    seq: int
    prev_hash: str = Field(description="sha256 (hex) of the previous entry's stored bytes; 64 zeros for the first.")


class TrailEntry(AuditEntry):
    """An entry as audit_log shows it: also where it sits in the chain."""

    seq: int | None = Field(description="Its sequence number; None when it has none (not written by a server).")
    prev_hash: str | None = None
    hash: str = Field(description="sha256 (hex) of the entry's bytes as stored in etcd.")


ChainProblem = Literal["edited", "removed", "forged", "unreadable", "head"]


class ChainBreak(BaseModel):
    problem: ChainProblem = Field(
        description=(
            "edited: changed after it was written; removed: missing from the chain; forged: not appended by a "
            "server (or replaced); unreadable: not an audit entry; head: the chain's head key is missing or damaged."
        )
    )
    seq: int | None = Field(description="The entry concerned (the first one, for several removed in a row).")
    key: str = Field(description="The etcd key concerned.")
    detail: str


class ChainReport(BaseModel):
    intact: bool = Field(description="True when every entry links to the one before it and the head matches.")
    entries: int = Field(description="Entries checked (all of those in etcd, whatever the limit and tool filter).")
    first_seq: int | None = None
    last_seq: int | None = None
    breaks: list[ChainBreak] = Field(default_factory=list, description="What is wrong, in key order (at most 100).")
    breaks_count: int = 0


class AuditLogResult(BaseModel):
    enabled: bool = Field(description="False when this server does not keep the audit trail in etcd.")
    entries: list[TrailEntry] = Field(default_factory=list, description="Newest first, none hidden.")
    chain: ChainReport | None = Field(default=None, description="The hash chain check over every entry in etcd.")
    note: str | None = None
