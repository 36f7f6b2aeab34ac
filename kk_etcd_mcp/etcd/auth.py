"""etcd's own access control (the Auth service): users, roles, key permissions, auth on/off.

Every call goes through the client's ``transport.call``, so it authenticates lazily, re-authenticates once when
the token expired, is bounded by the request timeout, and has connection and permission failures
mapped by ``errors.map_error``. What only this module knows is *which* name an etcd message is about
("user name not found" in a grant may be the user's or the role's), so those messages are translated
here, into ``user not found: bob``, ``role already exists: reader`` and the like.

Passwords pass through to etcd and nowhere else: no message built here contains one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import grpc
from etcd3aio import EtcdPermissionDeniedError
from etcd3aio.auth import AuthService, PermissionType

from ..errors import (
    AuthenticationFailedError,
    ConflictError,
    InvalidArgumentError,
    KkEtcdError,
    NotFoundError,
    PermissionDeniedError,
)
from .client import EtcdClient
from .errors import grpc_details

T = TypeVar("T")

PermissionKind = Literal["read", "write", "readwrite"]
_KIND_OF_TYPE: dict[int, PermissionKind] = {
    int(PermissionType.READ): "read",
    int(PermissionType.WRITE): "write",
    int(PermissionType.READWRITE): "readwrite",
}
_TYPE_OF_KIND = {kind: PermissionType(value) for value, kind in _KIND_OF_TYPE.items()}

# A user name no one has: authenticating as it tells "auth is off" from "auth is on" without credentials.
_PROBE_USER = "kk-etcd-mcp/auth-probe"


@dataclass(frozen=True, slots=True)
class AuthState:
    """Whether etcd enforces authentication.

    ``revision`` is etcd's auth revision; ``None`` when it was not available and ``enabled`` was
    inferred instead (``source == "inferred"``): etcd 3.4 has no AuthStatus RPC, and etcd 3.5 answers
    it only for users with role root.
    """

    enabled: bool
    revision: int | None
    source: Literal["status", "inferred"]


@dataclass(frozen=True, slots=True)
class KeyPermission:
    """One permission of a role: ``key`` alone when ``range_end`` is empty, else ``[key, range_end)``.

    etcd spells "every key from ``key`` on" as ``range_end == b"\\0"``; with ``key == b""`` that is
    every key.
    """

    key: bytes
    range_end: bytes
    kind: PermissionKind


def _show(data: bytes) -> str:
    return data.decode(errors="backslashreplace")


def describe_range(key: bytes, range_end: bytes) -> str:
    """``key app/x``, ``range [a, b)`` or ``every key from a`` for messages."""
    if not range_end:
        return f"key {_show(key)}"
    if range_end == b"\0":
        return f"every key from {_show(key)!r}" if key else "every key"
    return f"range [{_show(key)}, {_show(range_end)})"


class EtcdAuth:
    """etcd's Auth API on top of an open :class:`EtcdClient` (which it shares, token and all)."""

    def __init__(self, etcd: EtcdClient) -> None:
        self.etcd = etcd
        self._transport = etcd.transport

    @property
    def _auth(self) -> AuthService:
        return self._transport.services.auth

    async def _rpc(
        self,
        action: str,
        subject: str,
        fn: Callable[[], Awaitable[T]],
        translate: Callable[[str], KkEtcdError | None] = lambda _: None,
    ) -> T:
        """``fn`` through EtcdClient's plumbing, with etcd's name-level errors translated by ``translate``.

        Translation happens inside the call, so a token problem still reaches ``transport.call`` untouched and
        is cured there by authenticating again.
        """

        async def attempt() -> T:
            try:
                return await fn()
            except EtcdPermissionDeniedError as exc:
                raise PermissionDeniedError(
                    f"permission denied: {self.etcd.username or 'the anonymous user'} may not {action} {subject}. "
                    "Administering etcd users, roles and authentication needs role root."
                ) from exc
            except grpc.aio.AioRpcError as exc:
                mapped = translate(grpc_details(exc))
                if mapped is None:
                    raise
                raise mapped from exc

        return await self._transport.call(action, subject, attempt)

    # Auth on/off -----------------------------------------------------------------------------------

    async def status(self) -> AuthState:
        """Whether auth is on. Falls back to inference where the AuthStatus RPC is missing or refused."""
        anonymous = self.etcd.username is None

        async def attempt() -> AuthState | None:
            try:
                resp = await self._auth.auth_status()
            except EtcdPermissionDeniedError:
                return AuthState(True, None, "inferred")  # only an authenticated non-root user is refused
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return None  # etcd 3.4: no AuthStatus RPC
                if anonymous and "user name is empty" in grpc_details(exc):
                    return AuthState(True, None, "inferred")  # etcd wants a user: auth is on
                raise
            return AuthState(bool(resp.enabled), int(resp.authRevision), "status")

        state = await self._transport.call("read the auth status of", "etcd", attempt)
        if state is not None:
            return state
        return AuthState(await self._probe_enabled(), None, "inferred")

    async def _probe_enabled(self) -> bool:
        """Authenticate as the server's own user (etcd says "not enabled", hands out a token, or says
        "failed"), or without one as a user that does not exist."""
        if self.etcd.username is not None:
            try:
                return await self.etcd.login()
            except AuthenticationFailedError:
                return True  # only an enabled etcd checks passwords

        async def attempt() -> bool:
            try:
                await self._auth.authenticate(_PROBE_USER, "")
            except grpc.aio.AioRpcError as exc:
                detail = grpc_details(exc)
                if "authentication is not enabled" in detail:
                    return False
                if "authentication failed" in detail:
                    return True
                raise
            return True  # cannot happen (nobody has that name), but then auth is certainly on

        return await self._transport.call("read the auth status of", "etcd", attempt)

    async def enable(self) -> None:
        def translate(detail: str) -> KkEtcdError | None:
            if "root user does not exist" in detail:
                return InvalidArgumentError("cannot enable authentication: etcd has no user root")
            if "root user does not have root role" in detail:
                return InvalidArgumentError("cannot enable authentication: etcd user root does not hold role root")
            return None

        await self._rpc("enable authentication in", "etcd", lambda: self._auth.auth_enable(), translate)

    async def disable(self) -> None:
        await self._rpc("disable authentication in", "etcd", lambda: self._auth.auth_disable())

    # Users -----------------------------------------------------------------------------------------

    async def user_list(self) -> list[str]:
        resp = await self._rpc("list", "etcd users", lambda: self._auth.user_list())
        return [str(name) for name in resp.users]

    async def user_roles(self, name: str) -> list[str]:
        """The roles of user ``name`` (etcd's UserGet)."""
        resp = await self._rpc("read", f"user {name}", lambda: self._auth.user_get(name), _names(user=name))
        return [str(role) for role in resp.roles]

    async def user_add(self, name: str, password: str) -> None:
        await self._rpc(
            "add",
            f"user {name}",
            lambda: self._auth.user_add(name, password),
            _names(user=name),
        )

    async def user_delete(self, name: str) -> None:
        await self._rpc("delete", f"user {name}", lambda: self._auth.user_delete(name), _names(user=name))

    async def user_change_password(self, name: str, password: str) -> None:
        await self._rpc(
            "change the password of",
            f"user {name}",
            lambda: self._auth.user_change_password(name, password),
            _names(user=name),
        )

    async def user_grant_role(self, name: str, role: str) -> None:
        await self._rpc(
            "grant",
            f"role {role} to user {name}",
            lambda: self._auth.user_grant_role(name, role),
            _names(user=name, role=role),
        )

    async def user_revoke_role(self, name: str, role: str) -> None:
        await self._rpc(
            "revoke",
            f"role {role} from user {name}",
            lambda: self._auth.user_revoke_role(name, role),
            _names(user=name, role=role),
        )

    # Roles -----------------------------------------------------------------------------------------

    async def role_list(self) -> list[str]:
        resp = await self._rpc("list", "etcd roles", lambda: self._auth.role_list())
        return [str(name) for name in resp.roles]

    async def role_permissions(self, role: str) -> list[KeyPermission]:
        """The key permissions of ``role`` (etcd's RoleGet)."""
        resp = await self._rpc("read", f"role {role}", lambda: self._auth.role_get(role), _names(role=role))
        return [_key_permission(p) for p in resp.perm]

    async def role_add(self, role: str) -> None:
        await self._rpc("add", f"role {role}", lambda: self._auth.role_add(role), _names(role=role))

    async def role_delete(self, role: str) -> None:
        await self._rpc("delete", f"role {role}", lambda: self._auth.role_delete(role), _names(role=role))

    async def role_grant_permission(self, role: str, key: bytes, range_end: bytes, kind: PermissionKind) -> None:
        """Grant ``kind`` on ``key`` (empty ``range_end``) or ``[key, range_end)``; replaces a grant on that range."""
        await self._rpc(
            "grant",
            f"{kind} on {describe_range(key, range_end)} to role {role}",
            lambda: self._auth.role_grant_permission(role, key, range_end or None, perm_type=_TYPE_OF_KIND[kind]),
            _names(role=role),
        )

    async def role_revoke_permission(self, role: str, key: bytes, range_end: bytes) -> None:
        """Revoke the permission on exactly this key or range (etcd matches both ends exactly)."""
        what = describe_range(key, range_end)

        def translate(detail: str) -> KkEtcdError | None:
            if "permission is not granted to the role" in detail:
                return NotFoundError(
                    f"role {role} has no permission on exactly {what}: a revoke must name the key and range end "
                    "as they were granted. Read the role to see its permissions."
                )
            return _names(role=role)(detail)

        await self._rpc(
            "revoke",
            f"the permission on {what} from role {role}",
            lambda: self._auth.role_revoke_permission(role, key, range_end or None),
            translate,
        )


def already_exists(what: str, name: str) -> ConflictError:
    """etcd's answer to adding a user or role that exists (also what a dry run of it says)."""
    return ConflictError(f"{what} already exists: {name}. Nothing was changed; pick another name.")


def _names(*, user: str | None = None, role: str | None = None) -> Callable[[str], KkEtcdError | None]:
    """Translation of etcd's messages about the user and role a call names."""

    def translate(detail: str) -> KkEtcdError | None:
        if user is not None and "user name not found" in detail:
            return NotFoundError(f"user not found: {user}. Check the name against the list of users.")
        if role is not None and "role name not found" in detail:
            return NotFoundError(f"role not found: {role}. Check the name against the list of roles.")
        if user is not None and "user name already exists" in detail:
            return already_exists("user", user)
        if role is not None and "role name already exists" in detail:
            return already_exists("role", role)
        if user is not None and role is not None and "role is not granted to the user" in detail:
            return NotFoundError(f"user {user} does not hold role {role}; nothing was changed.")
        if "invalid auth management" in detail:
            return InvalidArgumentError(
                "etcd refused: while authentication is enabled, user root must exist and keep role root."
            )
        return None

    return translate


def _key_permission(perm: Any) -> KeyPermission:
    return KeyPermission(key=bytes(perm.key), range_end=bytes(perm.range_end), kind=_KIND_OF_TYPE[int(perm.permType)])
