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
    arguments: dict[str, Any] = Field(description="The call's arguments, secrets replaced by '***', long values cut.")
    outcome: Outcome
    error: str | None = Field(default=None, description="Why it was refused or failed.")
    affected: list[str] = Field(
        default_factory=list,
        description="Keys written or deleted (for access tools user:<name> / role:<name> / auth), at most 100.",
    )
    affected_count: int = Field(default=0, description="How many were affected in all.")
    revision: int | None = Field(default=None, description="etcd revision after the change, when it made one.")
    duration_ms: float = 0.0


class AuditLogResult(BaseModel):
    enabled: bool = Field(description="False when this server does not keep the audit trail in etcd.")
    entries: list[AuditEntry] = Field(default_factory=list, description="Newest first.")
    note: str | None = None
