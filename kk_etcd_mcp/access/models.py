"""Results of access administration: the shared language of core, MCP tools and callers.

A password appears in exactly one place: the ``password`` field of a result that generated it. That
field is left out of ``repr`` (so logging a result cannot leak it) and marked ``sensitive`` in the
JSON schema, for clients that hide or redact such values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..change import Change

PermissionKind = Literal["read", "write", "readwrite"]


def _generated_password() -> Any:
    return Field(
        default=None,
        repr=False,
        description=(
            "SENSITIVE. The generated password, shown only this once: hand it to whoever needs it and do not "
            "repeat it elsewhere. null when the caller supplied the password (it is never echoed)."
        ),
        json_schema_extra={"sensitive": True, "format": "password"},
    )


class KeyPermission(BaseModel):
    key: str = Field(description="The key, or the start of the range.")
    range_end: str | None = Field(
        description=(
            "Exclusive end of the range; null for the single key `key`. etcd writes '\\u0000' for "
            "'every key from `key` on' (with key '' that is every key)."
        )
    )
    prefix: bool = Field(description="True when the range is every key starting with `key`.")
    permission: PermissionKind


class RoleInfo(BaseModel):
    name: str
    permissions: list[KeyPermission] = Field(
        description="Key permissions of the role. Role root grants readwrite on every key."
    )


class RoleListResult(BaseModel):
    roles: list[RoleInfo]


class UserInfo(BaseModel):
    name: str
    roles: list[str]


class UserListResult(BaseModel):
    users: list[UserInfo]


class UserRoleChange(UserInfo, Change):
    """A user's roles after a grant or revoke (with dry_run: as they would be)."""

    changed: bool = Field(default=True, description="False when nothing changed (the role was held, or not).")


class RolePermissionChange(RoleInfo, Change):
    """A role's permissions after it was added, or a grant or revoke (with dry_run: as they would be)."""

    changed: bool = Field(
        default=True, description="False when nothing changed (the same grant existed, or none to revoke)."
    )


class UserAddResult(Change):
    name: str
    roles: list[str] = Field(description="Roles the new user holds.")
    password_generated: bool = Field(
        description="True when the password was generated (see `password`; with dry_run: would be)."
    )
    password: str | None = _generated_password()


class PasswordChangeResult(Change):
    name: str
    password_generated: bool = Field(
        description="True when the new password was generated (see `password`; with dry_run: would be)."
    )
    password: str | None = _generated_password()


class UserDeleteResult(Change):
    name: str
    deleted: bool = Field(default=True, description="False on a dry run.")


class RoleDeleteResult(Change):
    name: str
    deleted: bool = Field(default=True, description="False on a dry run.")


class AuthStatusResult(BaseModel):
    enabled: bool = Field(description="Whether etcd enforces authentication.")
    auth_revision: int | None = Field(
        default=None, description="etcd's auth revision; null when etcd did not report it (see `note`)."
    )
    users: int | None = Field(
        default=None, description="Number of users; null when the connected user may not list them."
    )
    roles: int | None = Field(
        default=None, description="Number of roles; null when the connected user may not list them."
    )
    connected_as: str | None = Field(description="etcd user this server authenticates as; null: no credentials.")
    note: str | None = Field(default=None, description="What was inferred rather than reported, and why.")


class AuthChangeResult(Change):
    enabled: bool = Field(description="Whether etcd enforces authentication now (with dry_run: would).")
    changed: bool = Field(description="False when authentication already was in that state.")
    connected_as: str | None = Field(description="etcd user this server authenticates as.")
    note: str | None = None
