"""Maps etcd3aio, gRPC and our KV channel's failures onto kk_etcd_mcp's error hierarchy, in this one place."""

from __future__ import annotations

import grpc
from etcd3aio import (
    EtcdConnectionError,
    EtcdError,
    EtcdPermissionDeniedError,
    EtcdTransientError,
    EtcdUnauthenticatedError,
)

from ..errors import (
    AuthenticationFailedError,
    CompactedError,
    InvalidArgumentError,
    KkEtcdError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from ..grpc_await import LoopStalledError
from ..h2grpc.unary import CallError

_INVALID_TOKEN_MARKERS = ("invalid auth token", "user name is empty", "auth token is expired")


def grpc_details(exc: BaseException) -> str:
    """The etcd message inside a gRPC error (``etcdserver: ...``), or the exception text."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, grpc.aio.AioRpcError):
            return str(cause.details() or cause.code().name)
        if isinstance(cause, CallError):
            return cause.details or str(cause.code)
        cause = cause.__cause__
    return str(exc) or type(exc).__name__


def is_token_problem(exc: BaseException) -> bool:
    """True when a fresh authentication may cure the failure (expired or missing token)."""
    text = grpc_details(exc)
    return any(marker in text for marker in _INVALID_TOKEN_MARKERS)


def map_error(exc: BaseException, *, endpoints: str, user: str | None, action: str, subject: str) -> KkEtcdError:
    """Translate one etcd3aio/grpc/timeout failure into a KkEtcdError with an actionable message.

    ``action`` and ``subject`` name what was attempted ("write", "app/db") for permission errors.
    """
    detail = grpc_details(exc)
    if isinstance(exc, LoopStalledError):
        return UnavailableError(
            f"this server was too busy to read etcd's answer in time: its event loop was stalled for "
            f"{exc.stalled:.0f}s, while etcd at {endpoints} may well have answered. Try again."
        )
    if isinstance(exc, TimeoutError | EtcdConnectionError | EtcdTransientError):
        return UnavailableError(f"etcd unavailable at {endpoints}: {_reason(exc, detail)}")
    # etcd answers bad credentials with INVALID_ARGUMENT and a missing token with several codes.
    if "user name is empty" in detail or (user is None and isinstance(exc, EtcdUnauthenticatedError)):
        return AuthenticationFailedError(
            "etcd has authentication enabled but no credentials are configured: "
            "set KK_ETCD_USERNAME and KK_ETCD_PASSWORD (or KK_ETCD_PASSWORD_FILE)."
        )
    if "authentication failed" in detail or isinstance(exc, EtcdUnauthenticatedError):
        return AuthenticationFailedError(
            f"authentication failed for etcd user {user}: {detail.removeprefix('etcdserver: ')}. "
            "Check the username and password (KK_ETCD_USERNAME, KK_ETCD_PASSWORD or KK_ETCD_PASSWORD_FILE)."
        )
    if isinstance(exc, EtcdPermissionDeniedError):
        who = user or "the anonymous user"
        return PermissionDeniedError(
            f"permission denied: {who} may not {action} {subject}. Ask an etcd administrator for a role that grants it."
        )
    if isinstance(exc, grpc.aio.AioRpcError):
        return _map_status(exc.code(), detail, endpoints=endpoints, action=action, subject=subject)
    if isinstance(exc, CallError):
        return _map_call_error(exc, detail, endpoints=endpoints, user=user, action=action, subject=subject)
    if isinstance(exc, EtcdError):
        return UnavailableError(f"etcd call failed at {endpoints}: {detail}")
    raise TypeError(f"not an etcd failure: {exc!r}")


def _map_call_error(
    exc: CallError, detail: str, *, endpoints: str, user: str | None, action: str, subject: str
) -> KkEtcdError:
    """A KV channel's failure, read as etcd3aio's are: its status code decides, by the same rules."""
    as_etcd3aio = {"UNAUTHENTICATED": EtcdUnauthenticatedError, "PERMISSION_DENIED": EtcdPermissionDeniedError}
    if exc.code in as_etcd3aio:
        error = as_etcd3aio[exc.code](detail)
        return map_error(error, endpoints=endpoints, user=user, action=action, subject=subject)
    code = grpc.StatusCode[exc.code] if exc.code in grpc.StatusCode.__members__ else grpc.StatusCode.UNAVAILABLE
    return _map_status(code, detail, endpoints=endpoints, action=action, subject=subject)


def _map_status(code: grpc.StatusCode, detail: str, *, endpoints: str, action: str, subject: str) -> KkEtcdError:
    if "required revision has been compacted" in detail:
        return CompactedError(f"cannot {action} {subject}: that revision was compacted away by etcd")
    if "future revision" in detail:
        return InvalidArgumentError(f"cannot {action} {subject}: the revision is newer than etcd's current one")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return UnavailableError(f"etcd unavailable at {endpoints}: {_connection_reason(detail)}")
    if "request is too large" in detail or "message larger than max" in detail:
        return InvalidArgumentError(
            f"cannot {action} {subject}: the request is larger than etcd accepts "
            "(its --max-request-bytes, 1.5 MiB by default); store a smaller value. Nothing was written."
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(f"cannot {action} {subject}: {detail}")
    return InvalidArgumentError(f"etcd refused to {action} {subject}: {detail}")


# grpc's words for a failed connection, and what they mean to someone looking for etcd.
_CONNECTION_FAILURES = (
    ("Connection refused", "connection refused (is etcd running at that address?)"),
    ("before receiving SETTINGS frame", "connected, but no answer came (is etcd still starting, or is it etcd?)"),
    ("Connection reset", "the connection was reset"),
    ("Socket closed", "the connection was closed"),
    ("connection refused", "connection refused (is etcd running at that address?)"),
)


def _reason(exc: BaseException, detail: str) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within the request timeout"
    return _connection_reason(detail)


def _connection_reason(detail: str) -> str:
    for marker, meaning in _CONNECTION_FAILURES:
        if marker in detail:
            return meaning
    # grpc's text for a failed connection is long; its tail is what matters.
    return detail.rsplit("; last error: ", 1)[-1]
