"""The one error hierarchy of kk-etcd-mcp.

Every message is a full sentence a model (or a person) can act on. Core code raises these; the etcd
adapter maps etcd3aio/grpc errors onto them once (``kk_etcd_mcp.etcd.errors``); the MCP layer turns
them into tool errors in one place (``kk_etcd_mcp.mcp_server.errors``).

    KkEtcdError
    ├── NotFoundError              key not found: app/db
    ├── ConflictError              something changed under a multi-step write (import)
    │   └── RevisionConflictError  revision conflict on app/db: expected 12, found 15
    ├── PermissionDeniedError      permission denied: alice may not write app/db
    ├── AuthenticationFailedError  authentication failed for etcd user alice: ...
    ├── UnavailableError           etcd unavailable at http://127.0.0.1:2379: ...
    ├── CompactedError             revision 3 of app/db was compacted (oldest kept: 10)
    ├── InvalidArgumentError       bad input from the caller; nothing was written
    │   └── InvalidValueError      invalid yaml at line 2, column 5: ...
    ├── ForbiddenKeyError          key secret/x is outside the allowed prefixes (app/)
    ├── InvalidConfigError         config app/db at revision 42 is not valid: field port: ...
    ├── LocalIOError               cannot write to backup_dir /var/backups: No space left on device. ...
    └── StartupError               cannot listen on 127.0.0.1:2445: the port is in use by pid 42 (...)
"""

from __future__ import annotations


class KkEtcdError(Exception):
    """Base of every error kk-etcd-mcp raises on purpose."""


class NotFoundError(KkEtcdError):
    """A key, user or role that the call names does not exist."""


class ConflictError(KkEtcdError):
    """A compare-and-swap failed: the store changed since the caller (or the plan) read it."""


class RevisionConflictError(ConflictError):
    """A compare-and-swap found another revision than the caller expected; nothing was written."""

    def __init__(self, key: str, expected: int, found: int) -> None:
        self.key, self.expected, self.found = key, expected, found
        super().__init__(
            f"revision conflict on {key}: expected {expected}, found {found}. "
            "Nothing was written; read the key again and retry with the current mod_revision."
        )


class PermissionDeniedError(KkEtcdError):
    """etcd refused the call for the connected user."""


class AuthenticationFailedError(KkEtcdError):
    """The configured etcd credentials were rejected."""


class UnavailableError(KkEtcdError):
    """etcd did not answer within the request timeout."""


class CompactedError(KkEtcdError):
    """The requested revision is older than etcd's compaction point."""

    def __init__(self, message: str, compact_revision: int = 0) -> None:
        self.compact_revision = compact_revision
        super().__init__(message)


class InvalidArgumentError(KkEtcdError):
    """The caller's input is not acceptable; nothing was written."""


class InvalidValueError(InvalidArgumentError):
    """A JSON or YAML value does not parse."""


class ForbiddenKeyError(KkEtcdError):
    """A key or prefix lies outside what the server is configured to touch."""


class InvalidConfigError(KkEtcdError):
    """A stored configuration value does not parse as its format or does not fit the application's model."""

    def __init__(self, key: str, revision: int, reason: str) -> None:
        self.key, self.revision, self.reason = key, revision, reason
        super().__init__(f"config {key} at revision {revision} is not valid: {reason}.")


class LocalIOError(KkEtcdError):
    """A file or directory on this machine could not be created, read or written (backup_dir, a snapshot)."""


class StartupError(KkEtcdError):
    """The server cannot start as configured (a port taken, the etcd data dir held, ...); it exits with code 1."""


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``[exc]`` for a plain one.

    Task groups wrap whatever their tasks raise; callers that handle one error kind unwrap here.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    found: list[BaseException] = []
    for inner in exc.exceptions:
        found.extend(leaf_exceptions(inner))
    return found
