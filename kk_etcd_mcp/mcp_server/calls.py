"""What every tool call passes through: the client's scope, the concurrency limit, the audit trail.

Order: scope (a client may not call a tool above its scope), then a free slot (over
``max_concurrent_calls`` a call fails at once as busy instead of queueing), then the tool: its
arguments' validation, its preview and confirmation, its body, domain errors mapped to tool errors.
A mutating tool's call is recorded exactly once, whatever its outcome and wherever it failed (bad
arguments, a preview that failed, the body): ``ok``, ``dry_run``, ``refused`` (scope, busy, not
confirmed: nothing was done) or ``error``. A round that only asks the user a question (2026-07-28's
``InputRequiredResult``) is not the end of the call: the retry that carries the answer is recorded.
"""

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import InputRequiredResult
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from .. import metrics
from ..audit import AuditEntry, AuditTrail, Outcome, redact
from ..audit.model import MAX_AFFECTED_SHOWN
from ..errors import KkEtcdError
from .errors import Refused
from .identity import ClientIdentity, Scope, current_identity

R = TypeVar("R")

# (the call's arguments, its result) -> (affected keys or names, how many in all)
Affected = Callable[[dict[str, Any], Any], tuple[list[str], int]]


def _own_text(exc: ToolError) -> str:
    """A tool error's text without mcp's "Error executing tool <name>: " prefix."""
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("Error executing tool ") and ": " in text else text


def _field(result: Any, name: str) -> Any:
    return getattr(result, name) if isinstance(result, BaseModel) and name in type(result).model_fields else None


def default_affected(arguments: dict[str, Any], result: Any) -> tuple[list[str], int]:
    """The keys a result names: ``keys`` (with ``deleted`` as the count), an import ``plan``, ``key``, ``path``."""
    keys = _field(result, "keys")
    if isinstance(keys, list):
        deleted = _field(result, "deleted")
        return keys, max(len(keys), deleted if isinstance(deleted, int) else 0)
    plan = _field(result, "plan")
    if isinstance(plan, BaseModel):
        changed = [*getattr(plan, "create", []), *getattr(plan, "update", []), *getattr(plan, "delete", [])]
        return changed, len(changed)
    for name in ("key", "path"):
        value = _field(result, name)
        if isinstance(value, str) and value:
            return [value], 1
    return [], 0


def result_revision(result: Any) -> int | None:
    for name in ("revision", "new_revision"):
        value = _field(result, name)
        if isinstance(value, int):
            return value
    return None


@dataclass(frozen=True)
class ToolPolicy:
    name: str
    scope: Scope
    mutating: bool
    affected: Affected = default_affected


class CallGuard:
    def __init__(self, max_concurrent: int = 32, audit: AuditTrail | None = None) -> None:
        self.max_concurrent = max_concurrent
        self.audit = audit
        self.running = 0

    @staticmethod
    def scope_refusal(tool: str, needed: Scope, identity: ClientIdentity) -> Refused:
        held = f"has scope {identity.scope!r}" if identity.scope is not None else "has no scope"
        return Refused(
            f"{tool} needs scope {needed!r}, and this client ({identity.name}) {held}. "
            "Nothing was done; ask for a token with that scope."
        )

    async def refuse_scope(self, policy: ToolPolicy, identity: ClientIdentity, arguments: dict[str, Any]) -> str:
        """The refusal of a call above the client's scope, recorded as ``run`` records it; for a call refused
        before it reaches the tool (HTTP's ``insufficient_scope``)."""
        text = str(self.scope_refusal(policy.name, policy.scope, identity))
        if policy.mutating and self.audit is not None:
            entry = self._entry(policy, identity, arguments, "refused", text, None, time.monotonic(), self.audit.values)
            await self.audit.record(entry)
        return text

    async def run(self, policy: ToolPolicy, arguments: dict[str, Any], invoke: Callable[[], Awaitable[R]]) -> R:
        """Run ``invoke`` (the whole tool call: validation, resolvers, body) within scope, slots and audit."""
        identity = current_identity()
        started = time.monotonic()
        outcome: Outcome = "error"
        error: str | None = "cancelled before it finished"
        result: Any = None  # R once invoke returned
        finished = True
        try:
            if not identity.allows(policy.scope):
                raise self.scope_refusal(policy.name, policy.scope, identity)
            if self.running >= self.max_concurrent:
                raise Refused(
                    f"busy: {self.running} calls are running (max_concurrent_calls = {self.max_concurrent}); "
                    "try again in a moment. Nothing was done."
                )
            self.running += 1
            try:
                result = await invoke()
            finally:
                self.running -= 1
            if isinstance(result, InputRequiredResult):
                finished = False  # the client answers, then calls again: that call is recorded
            outcome, error = ("dry_run" if _field(result, "dry_run") is True else "ok"), None
            returned: R = result
            return returned
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, Refused) or isinstance(cause, Refused):
                outcome = "refused"
            error = str(cause) if isinstance(cause, ToolError | KkEtcdError) else _own_text(exc)
            if isinstance(exc, UnexpectedToolError):
                error = f"unexpected {type(cause).__name__}" if cause is not None else "unexpected error"
            raise
        except Exception as exc:
            error = f"unexpected {type(exc).__name__}"
            raise
        finally:
            if finished:
                metrics.TOOL_CALLS.labels(policy.name, outcome).inc()
                metrics.TOOL_DURATION.labels(policy.name).observe(time.monotonic() - started)
            if finished and policy.mutating and self.audit is not None:
                entry = self._entry(policy, identity, arguments, outcome, error, result, started, self.audit.values)
                await self.audit.record(entry)

    @staticmethod
    def _entry(
        policy: ToolPolicy,
        identity: ClientIdentity,
        arguments: dict[str, Any],
        outcome: Outcome,
        error: str | None,
        result: Any,
        started: float,
        log_values: bool = False,
    ) -> AuditEntry:
        plain = to_jsonable_python(arguments, fallback=repr)
        affected, count = policy.affected(arguments, result) if outcome in ("ok", "dry_run") else ([], 0)
        return AuditEntry(
            time=datetime.now(UTC),
            tool=policy.name,
            client=identity.name,
            arguments=redact(plain, values=log_values),
            outcome=outcome,
            error=error,
            affected=affected[:MAX_AFFECTED_SHOWN],
            affected_count=count,
            revision=result_revision(result) if outcome == "ok" else None,
            duration_ms=round((time.monotonic() - started) * 1000, 3),
        )
