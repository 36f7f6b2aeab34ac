"""What an audit line may repeat of a call's arguments. The rule, in the order it is applied:

1. An argument or field named like a secret (password, pwd, token, auth, api key, ...), and the value
   written to a key so named (``app/db/password``), is ``"***"``: never its hash either, since the hash
   of a guessable secret confirms a guess. So passwords never appear, whatever the settings.
2. An argument that says what a call acts on, or how (``IDENTIFYING``: keys, prefixes, service names
   and addresses, users, roles, modes, revisions, TTLs, flags), is repeated as given, long values cut.
3. Anything else is content the call writes: kv values, import documents, service metadata and check
   settings, and any argument not named in 2, so a new argument is covered before anyone thinks of it.
   Content appears only as ``{"bytes": N, "sha256": <first 16 hex digits>}`` of its UTF-8 text (a
   string) or compact sorted JSON (anything else): the same value gives the same hash, so a change can
   be matched against a value without the audit trail holding it.
   With ``values=True`` (the ``audit_values`` setting; risky: values may hold secrets) content is
   repeated instead, cut when long and masked where it looks secret: fields named as in 1 (also in a
   JSON string), ``name=value`` / ``name: value`` pairs so named in text, ``user:password@`` in URLs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

REDACTED = "***"
MAX_TEXT = 200
MAX_ITEMS = 20
MAX_PARSED = 65_536  # characters of a string value parsed as JSON to mask its fields (audit_values only)
HASH_DIGITS = 16

IDENTIFYING = frozenset(
    {
        "key",
        "prefix",
        "range_end",
        "name",
        "addr",
        "type",
        "mode",
        "format",
        "permission",
        "role",
        "roles",
        "dry_run",
        "expected_revision",
        "to_revision",
        "revision",
        "lease_ttl",
        "ttl",
        "weight",
        "limit",
        "tool",
        "strategy",
        "status",
        "cursor",
        "keys_only",
        "include_internal",
    }
)

_SECRET_WORDS = (
    r"pass(?:word|wd|phrase)?|pwd|secret|token|credential|api[_-]?key|private[_-]?key|access[_-]?key|auth|"
    r"cookie|session|signature|bearer|jwt|otp|salt"
)
_SENSITIVE = re.compile(_SECRET_WORDS, re.IGNORECASE)
# name=value, name: value, "name": "value" in text, where the name looks like a secret's
_ASSIGNMENT = re.compile(
    rf"(?P<name>[\w.-]*(?:{_SECRET_WORDS})[\w.-]*)(?P<sep>[\"']?[ \t]*[:=][ \t]*)"
    r"(?:\"[^\"\n]*\"?|'[^'\n]*'?|[^\s,;&\"']+(?:[ \t]+[^\s,;&\"']+)*)",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def is_sensitive(name: str) -> bool:
    return _SENSITIVE.search(name) is not None


def redact(arguments: dict[str, Any], *, values: bool = False) -> dict[str, Any]:
    """A copy of ``arguments`` (JSON-like values) safe to write into the audit trail."""
    key = arguments.get("key")
    secret_key = isinstance(key, str) and is_sensitive(key)
    cleaned: dict[str, Any] = {}
    for name, value in arguments.items():
        if value is None:
            cleaned[name] = None  # "not given" is no secret
        elif is_sensitive(name) or (name == "value" and secret_key):
            cleaned[name] = REDACTED
        elif name in IDENTIFYING:
            cleaned[name] = _abridge(value)
        elif values:
            cleaned[name] = _reveal(value)
        else:
            cleaned[name] = fingerprint(value)
    return cleaned


def fingerprint(value: Any) -> dict[str, Any]:
    """Size and hash of a value, standing in for it."""
    if isinstance(value, str):
        raw = value.encode()
    else:
        raw = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr).encode()
    return {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()[:HASH_DIGITS]}


def _abridge(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return _first_items(value, _abridge)
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return f"{value[:MAX_TEXT]}... ({len(value)} characters)"
    return value


def _first_items(items: list[Any] | tuple[Any, ...], each: Callable[[Any], Any]) -> list[Any]:
    shown = [each(item) for item in items[:MAX_ITEMS]]
    if len(items) > MAX_ITEMS:
        shown.append(f"... {len(items) - MAX_ITEMS} more")
    return shown


def _reveal(value: Any) -> Any:
    """Content shown (``audit_values``): secret-looking parts masked, long values cut."""
    if isinstance(value, dict):
        key = value.get("key")
        secret_key = isinstance(key, str) and is_sensitive(key)
        return {
            name: REDACTED
            if item is not None and (is_sensitive(str(name)) or (name == "value" and secret_key))
            else _reveal(item)
            for name, item in value.items()
        }
    if isinstance(value, list | tuple):
        return _first_items(value, _reveal)
    if isinstance(value, str):
        return _abridge(_mask_text(value))
    return value


def _mask_text(text: str) -> str:
    if text.lstrip()[:1] in ("{", "[") and len(text) <= MAX_PARSED:
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict | list):
            return json.dumps(_reveal(parsed), ensure_ascii=False)
    masked = _ASSIGNMENT.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", text)
    return _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", masked)
