"""The local copy of watched configuration (``cache_file=``): what lets a service start while etcd is down.

Written after every change delivered, atomically (a temporary file in the same directory, then a
rename) and readable by its owner only, since configuration often holds secrets. It holds the raw text
of the last valid values and their revisions, so a start from it goes through the same parsing and
validation as a value from etcd, and the first value read from etcd is not delivered again when it is
the one the cache held. A missing, unreadable or foreign cache is ignored (logged), never fatal.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class CachedValue:
    key: str
    text: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class CachedConfig:
    """The values of ``watched`` (a key, or a prefix) at ``revision``."""

    watched: str
    prefix: bool
    revision: int
    values: list[CachedValue]


async def read_cache(path: Path, watched: str, prefix: bool) -> CachedConfig | None:
    """The copy in ``path`` when it is one of ``watched``; None (and a log line) otherwise."""
    try:
        text = await anyio.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        log.warning("no cached copy of %s in %s yet", watched, path)
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot read the cached copy of %s in %s: %s", watched, path, exc)
        return None
    try:
        document = json.loads(text)
        cached = CachedConfig(
            watched=document["watched"],
            prefix=document["prefix"],
            revision=int(document["revision"]),
            values=[CachedValue(v["key"], v["text"], int(v["mod_revision"])) for v in document["values"]],
        )
    except (ValueError, KeyError, TypeError):
        log.warning("%s is not a cached copy written by kk-etcd-mcp; ignoring it", path)
        return None
    if (cached.watched, cached.prefix) != (watched, prefix):
        what = "prefix" if cached.prefix else "key"
        log.warning("%s holds a copy of %s %s, not of %s; ignoring it", path, what, cached.watched, watched)
        return None
    return cached


async def write_cache(path: Path, cached: CachedConfig) -> None:
    """Replace ``path`` with ``cached``; a failure is logged (the watch goes on without its copy)."""
    document = {
        "version": FORMAT_VERSION,
        "watched": cached.watched,
        "prefix": cached.prefix,
        "revision": cached.revision,
        "values": [{"key": v.key, "text": v.text, "mod_revision": v.mod_revision} for v in cached.values],
    }
    try:
        await anyio.to_thread.run_sync(_replace, path, json.dumps(document, ensure_ascii=False))
    except OSError as exc:
        log.warning("cannot write the cached copy of %s to %s: %s", cached.watched, path, exc)


def _replace(path: Path, text: str) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
