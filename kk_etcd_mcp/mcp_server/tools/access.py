"""Toolset ``access``: etcd users, roles, permissions, auth on/off. Thin: one AccessService call each.

Passwords: a tool takes one only as an optional argument and returns one only when it generated it,
in the result field ``password`` (marked sensitive). The server's own etcd credentials come from its
settings, never from tool arguments.
"""

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, ValidatorFunctionWrapHandler, WithJsonSchema, WrapValidator

from ...access import (
    AccessService,
    AuthChangeResult,
    AuthStatusResult,
    PasswordChangeResult,
    RoleDeleteResult,
    RoleInfo,
    RoleListResult,
    RolePermissionChange,
    UserAddResult,
    UserDeleteResult,
    UserInfo,
    UserListResult,
    UserRoleChange,
)
from ..toolset import DryRun, ToolRegistrar

UserName = Annotated[str, Field(description="etcd user name, e.g. 'alice'.")]
RoleName = Annotated[str, Field(description="etcd role name, e.g. 'app-reader'. Role 'root' is etcd's admin role.")]
Key = Annotated[str, Field(description="The key, or the start of the range, or the prefix when prefix=true.")]
RangeEnd = Annotated[
    str | None,
    Field(description="Exclusive end of a key range; leave out for one key. '\\u0000' means every key from `key` on."),
]
Prefix = Annotated[bool, Field(description="The permission covers every key starting with `key` ('' = every key).")]


# What the audit trail records as changed: the user, the role, or etcd's auth switch.
def _user(arguments: dict[str, Any], result: Any) -> tuple[list[str], int]:
    return [f"user:{arguments['name']}"], 1


def _role(arguments: dict[str, Any], result: Any) -> tuple[list[str], int]:
    return [f"role:{arguments.get('role') or arguments['name']}"], 1


def _auth(arguments: dict[str, Any], result: Any) -> tuple[list[str], int]:
    return ["auth"], 1


class _Withheld:
    """Stands in for a rejected password in pydantic's error text, which quotes the input it rejects."""

    def __repr__(self) -> str:
        return "<withheld>"


def _optional_secret(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if value is None or isinstance(value, str):
        return value
    return handler(_Withheld())  # "Input should be a valid string", without repeating the value


# The annotation is `str` on purpose (see kv.Value): MCPServer json-decodes string arguments of any other
# annotation, so a password such as "null" or "true" would change meaning or be quoted back in an error.
Password = Annotated[
    str,
    WrapValidator(_optional_secret),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "password", "writeOnly": True}, {"type": "null"}]}),
    Field(
        description=(
            "Leave out (recommended) to have a strong password generated and returned once in the result. "
            "A password given here is never echoed back or logged."
        )
    ),
]


def register_access_tools(tools: ToolRegistrar, access: AccessService) -> None:
    @tools.query("etcd authentication status")
    async def auth_status() -> AuthStatusResult:
        """Whether etcd enforces authentication, how many users and roles exist, and who this server is."""
        return await access.status()

    @tools.query("List etcd users")
    async def user_list() -> UserListResult:
        """Every etcd user with the roles it holds."""
        return await access.user_list()

    @tools.query("Read an etcd user")
    async def user_get(name: UserName) -> UserInfo:
        """One etcd user and its roles."""
        return await access.user_get(name)

    @tools.query("List etcd roles")
    async def role_list() -> RoleListResult:
        """Every etcd role with its key permissions."""
        return await access.role_list()

    @tools.query("Read an etcd role")
    async def role_get(name: RoleName) -> RoleInfo:
        """One role's key permissions (key, range_end, prefix, permission)."""
        return await access.role_get(name)

    # Mutating: a call may take data or access away (its plan decides whether the user is asked).
    @tools.change("Enable etcd authentication", destructive=True, idempotent=True, affected=_auth)
    async def auth_enable(dry_run: DryRun = False) -> AuthChangeResult:
        """Turn etcd authentication on. Needs user root holding role root (it says how to create them);
        refuses when this server has no credentials of its own, since it would lock itself out. Clients without
        credentials lose access, so the user is asked to confirm first; dry_run=true only checks and says so."""
        return await access.enable(dry_run)

    @tools.change("Disable etcd authentication", destructive=True, idempotent=True, affected=_auth)
    async def auth_disable(dry_run: DryRun = False) -> AuthChangeResult:
        """Turn etcd authentication off: every client may then do everything. Needs role root.
        The user is asked to confirm first; dry_run=true only says whether it would change anything."""
        return await access.disable(dry_run)

    @tools.change("Create an etcd user", affected=_user)
    async def user_add(
        name: UserName,
        password: Password = None,  # type: ignore[assignment]  # None is allowed by the validator and schema
        roles: Annotated[Sequence[str], Field(description="Roles to grant; each must exist (or be 'root').")] = (),
        dry_run: DryRun = False,
    ) -> UserAddResult:
        """Create an etcd user with the given roles. Fails with `user already exists: <name>` for an existing
        user. Without a password, a strong one is generated and returned once in `password`."""
        return await access.user_add(name, password, roles, dry_run)

    @tools.change("Change an etcd user's password", destructive=True, affected=_user)
    async def user_change_password(
        name: UserName,
        password: Password = None,  # type: ignore[assignment]  # None is allowed by the validator and schema
        dry_run: DryRun = False,
    ) -> PasswordChangeResult:
        """Set a user's password; without one, a strong one is generated and returned once in `password`.
        Refuses the user this server connects as (it would lose access). The old password stops working, so
        the user is asked to confirm first; dry_run=true only checks."""
        return await access.user_change_password(name, password, dry_run)

    @tools.change("Grant a role to a user", idempotent=True, affected=_user)
    async def user_grant_role(name: UserName, role: RoleName, dry_run: DryRun = False) -> UserRoleChange:
        """Grant a role to a user; returns the user's roles."""
        return await access.user_grant_role(name, role, dry_run)

    @tools.change("Revoke a role from a user", destructive=True, idempotent=True, affected=_user)
    async def user_revoke_role(name: UserName, role: RoleName, dry_run: DryRun = False) -> UserRoleChange:
        """Revoke a role from a user; returns the user's roles. Refuses role root of user root.
        The user is asked to confirm first; dry_run=true returns the roles the user would keep."""
        return await access.user_revoke_role(name, role, dry_run)

    @tools.change("Delete an etcd user", destructive=True, idempotent=True, affected=_user)
    async def user_delete(name: UserName, dry_run: DryRun = False) -> UserDeleteResult:
        """Delete an etcd user. Refuses user root and the user this server connects as.
        The user is asked to confirm first; dry_run=true only shows what would be deleted."""
        return await access.user_delete(name, dry_run)

    @tools.change("Create an etcd role", affected=_role)
    async def role_add(name: RoleName, dry_run: DryRun = False) -> RolePermissionChange:
        """Create a role without permissions; add them with role_grant_permission."""
        return await access.role_add(name, dry_run)

    @tools.change("Grant a key permission to a role", destructive=True, idempotent=True, affected=_role)
    async def role_grant_permission(
        role: RoleName,
        key: Key,
        permission: Annotated[
            Literal["read", "write", "readwrite"], Field(description="What the role may do.")
        ] = "read",
        range_end: RangeEnd = None,
        prefix: Prefix = False,
        dry_run: DryRun = False,
    ) -> RolePermissionChange:
        """Let a role read and/or write one key, a range, or a prefix. It replaces a grant on the same range: a
        narrower one (readwrite -> read) takes the rest away, and then the user is asked to confirm first."""
        return await access.role_grant_permission(role, key, permission, range_end, prefix, dry_run)

    @tools.change("Revoke a key permission from a role", destructive=True, idempotent=True, affected=_role)
    async def role_revoke_permission(
        role: RoleName,
        key: Key,
        range_end: RangeEnd = None,
        prefix: Prefix = False,
        dry_run: DryRun = False,
    ) -> RolePermissionChange:
        """Take back a permission; name the key and range exactly as granted (role_get shows them).
        The user is asked to confirm first; dry_run=true returns the permissions the role would keep."""
        return await access.role_revoke_permission(role, key, range_end, prefix, dry_run)

    @tools.change("Delete an etcd role", destructive=True, idempotent=True, affected=_role)
    async def role_delete(name: RoleName, dry_run: DryRun = False) -> RoleDeleteResult:
        """Delete a role (users lose it). Refuses role root.
        The user is asked to confirm first, shown its permissions and holders; dry_run=true only shows them."""
        return await access.role_delete(name, dry_run)
