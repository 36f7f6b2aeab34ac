"""Secrets out, long values cut: what an audit entry may repeat of a call's arguments."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
MAX_TEXT = 200
MAX_ITEMS = 20

# An argument whose name contains one of these words is a secret, wherever it is nested. So is the
# `value` beside a `key` that names one (kv_put to app/db/password, an import item like it).
_SENSITIVE = re.compile(
    r"pass(word|wd|phrase)|secret|token|credential|api[_-]?key|private[_-]?key|authorization|cookie", re.IGNORECASE
)


def is_sensitive(name: str) -> bool:
    return _SENSITIVE.search(name) is not None


def redact(arguments: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``arguments`` (JSON-like values) safe to write into the audit trail."""
    return {name: _clean(name, value, arguments) for name, value in arguments.items()}


def _clean(name: str, value: Any, siblings: dict[str, Any]) -> Any:
    if is_sensitive(name) and value is not None:
        return REDACTED
    if name == "value" and isinstance(siblings.get("key"), str) and is_sensitive(siblings["key"]):
        return REDACTED
    return _abridge(value)


def _abridge(value: Any) -> Any:
    if isinstance(value, dict):
        return redact(value)
    if isinstance(value, list | tuple):
        shown = [_abridge(item) for item in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            shown.append(f"... {len(value) - MAX_ITEMS} more")
        return shown
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return f"{value[:MAX_TEXT]}... ({len(value)} characters)"
    return value
