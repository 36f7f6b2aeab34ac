"""Snapshot file names: a plain name inside backup_dir, never a path.

A name is letters, digits, ``.``, ``-`` and ``_``, at most 100 characters, and does not start with a
dot (no hidden files, no ``.`` or ``..``; the server's own temporary files start with one). With
only these characters a name cannot contain a path separator, so it cannot leave backup_dir. A name
without any dot gets ``.db`` appended (etcdctl's convention); without a name, one is made from the
current UTC time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from ..errors import InvalidArgumentError

MAX_NAME_LENGTH = 100
SUFFIX = ".db"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def snapshot_file_name(name: str | None, now: datetime | None = None) -> str:
    """The file name for ``name`` (``None``: a timestamped default), or InvalidArgumentError."""
    if name is None:
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        return f"etcd-snapshot-{stamp}{SUFFIX}"
    problem = _problem(name)
    if problem:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise InvalidArgumentError(
            f"invalid snapshot name {shown!r}: {problem}. Give a plain file name such as 'before-upgrade.db' "
            f"(letters, digits, '.', '-', '_'; at most {MAX_NAME_LENGTH} characters); it is saved in backup_dir. "
            "Nothing was written."
        )
    return name if "." in name else name + SUFFIX


def _problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"it is longer than {MAX_NAME_LENGTH} characters"
    if "/" in name or "\\" in name:
        return "it is a path; only a file name is accepted"
    if name.startswith("."):
        return "it starts with '.'"
    if not _NAME.fullmatch(name):
        return "it contains characters other than letters, digits, '.', '-' and '_'"
    return None
