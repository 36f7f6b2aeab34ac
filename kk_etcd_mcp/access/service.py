"""AccessService: etcd users, roles, key permissions and auth on/off, behind the guardrails.

Every refusal happens before anything is written. Multi-step changes (a user with roles) check what
they can first and undo their own first step when a later one fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import anyio

from ..errors import AuthenticationFailedError, InvalidArgumentError, KkEtcdError, NotFoundError, PermissionDeniedError
from ..etcd import EtcdAuth, EtcdClient, already_exists, prefix_end
from ..etcd import KeyPermission as EtcdKeyPermission
from . import guardrails
from .guardrails import ROOT
from .models import (
    AuthChangeResult,
    AuthStatusResult,
    KeyPermission,
    PasswordChangeResult,
    PermissionKind,
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
from .passwords import check_password, generate_password

# What each permission allows: a grant replaced by a narrower one loses the difference.
_KINDS: dict[PermissionKind, frozenset[str]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"write"}),
    "readwrite": frozenset({"read", "write"}),
}

# etcd grants role root everything without storing it; RoleGet shows it so once the role is added.
_ROOT_PERMISSION = KeyPermission(key="", range_end="\0", prefix=True, permission="readwrite")


def _show(data: bytes) -> str:
    return data.decode(errors="backslashreplace")


def key_permission(perm: EtcdKeyPermission) -> KeyPermission:
    return KeyPermission(
        key=_show(perm.key),
        range_end=_show(perm.range_end) if perm.range_end else None,
        prefix=bool(perm.range_end) and perm.range_end == prefix_end(perm.key),
        permission=perm.kind,
    )


def key_range(key: str, range_end: str | None, prefix: bool) -> tuple[bytes, bytes]:
    """(key, range_end) as etcd takes them: an empty range_end is the single key."""
    start = key.encode()
    if prefix:
        if range_end is not None:
            raise InvalidArgumentError("give either prefix=true or a range_end, not both")
        return start, prefix_end(start)
    if range_end is None:
        if not start:
            raise InvalidArgumentError("the key must not be empty; with prefix=true, key '' means every key")
        return start, b""
    end = range_end.encode()
    if not end:
        raise InvalidArgumentError(
            "range_end '' is ambiguous: leave it out for the single key, use prefix=true for a prefix, "
            "or pass '\\u0000' for every key from `key` on"
        )
    if end != b"\0" and end <= start:
        raise InvalidArgumentError(f"range_end {range_end!r} must sort after the key {key!r}")
    return start, end


def describe_range(key: str, range_end: str | None, prefix: bool) -> str:
    """A permission's keys in words, from the arguments that name them."""
    if prefix:
        return "every key" if not key else f"the keys under prefix {key!r}"
    if range_end is None:
        return f"key {key!r}"
    if range_end == "\0":
        return "every key" if not key else f"every key from {key!r} on"
    return f"the keys from {key!r} up to {range_end!r}"


def describe_permission(perm: KeyPermission) -> str:
    return f"{perm.permission} on {describe_range(perm.key, perm.range_end, perm.prefix)}"


def _listed(names: Sequence[str], most: int = 20) -> str:
    more = f", ... ({len(names) - most} more)" if len(names) > most else ""
    return ", ".join(names[:most]) + more


class AccessService:
    def __init__(self, etcd: EtcdClient) -> None:
        self.auth = EtcdAuth(etcd)
        self.connected_as = etcd.username

    # Auth on/off -----------------------------------------------------------------------------------

    async def status(self) -> AuthStatusResult:
        state = await self.auth.status()
        notes: list[str] = []
        if state.source == "inferred":
            notes.append(
                "etcd did not report its auth status (etcd 3.4 has no AuthStatus call; etcd 3.5 answers it only "
                "for role root), so `enabled` was inferred from how etcd answers"
            )
        users = roles = None
        if state.enabled and self.connected_as is None:
            notes.append(
                "this server has no etcd credentials, so etcd refuses it everything: set KK_ETCD_USERNAME and "
                "KK_ETCD_PASSWORD (or KK_ETCD_PASSWORD_FILE) and restart it"
            )
        else:
            try:
                users = len(await self.auth.user_list())
                roles = len(await self.auth.role_list())
            except PermissionDeniedError:
                notes.append(f"{self.connected_as} may not list users and roles (that needs role root)")
        return AuthStatusResult(
            enabled=state.enabled,
            auth_revision=state.revision,
            users=users,
            roles=roles,
            connected_as=self.connected_as,
            note="; ".join(notes) or None,
        )

    async def enable(self, dry_run: bool = False) -> AuthChangeResult:
        """Turn authentication on, after the guardrails; ``dry_run`` runs them and says what would change."""
        guardrails.check_enable_credentials(self.connected_as)
        assert self.connected_as is not None
        state = await self.auth.status()
        if state.enabled:
            result = self._changed(True, False, "authentication already was enabled; nothing was changed")
            change = "change nothing: etcd authentication already is enabled"
            return result.model_copy(update={"dry_run": dry_run, "change": change})
        guardrails.check_root_ready(await self._roles_or_none(ROOT))
        note = None
        if self.connected_as != ROOT:
            roles = await self._roles_or_none(self.connected_as)
            note = guardrails.check_server_user_exists(self.connected_as, roles)
        planned = self._changed(True, True, note).model_copy(
            update={
                "dry_run": dry_run,
                "change": "turn etcd authentication on",
                "removes": [
                    "access without credentials: every client without an etcd user and password is refused, and "
                    "each user may then do only what its roles permit"
                ],
            }
        )
        if dry_run:
            return planned
        await self.auth.enable()
        try:
            # Log in again as the server's own user: proves it still gets in (etcd 3.4 has no AuthStatus
            # call, which on 3.5 would have needed a login too).
            await self.auth.etcd.login()
        except AuthenticationFailedError as exc:
            raise AuthenticationFailedError(
                f"authentication is now enabled in etcd, but etcd rejects this server's password for user "
                f"{self.connected_as}, so the server is locked out. Fix KK_ETCD_PASSWORD (or KK_ETCD_PASSWORD_FILE) "
                "and restart it, or disable authentication again as root: etcdctl --user root auth disable."
            ) from exc
        return planned

    async def disable(self, dry_run: bool = False) -> AuthChangeResult:
        """Turn authentication off; ``dry_run`` only says whether it would change anything."""
        state = await self.auth.status()
        if not state.enabled:
            result = self._changed(False, False, "authentication already was disabled; nothing was changed")
            change = "change nothing: etcd authentication already is disabled"
            return result.model_copy(update={"dry_run": dry_run, "change": change})
        change = (
            "turn etcd authentication off: every client may then read and write every key, and no user, "
            "password or role is checked"
        )
        removes = ["authentication: the users, passwords and role permissions etcd checks stop protecting anything"]
        if not dry_run:
            await self.auth.disable()
        return self._changed(False, True, None).model_copy(
            update={"dry_run": dry_run, "change": change, "removes": removes}
        )

    def _changed(self, enabled: bool, changed: bool, note: str | None) -> AuthChangeResult:
        return AuthChangeResult(enabled=enabled, changed=changed, connected_as=self.connected_as, note=note)

    async def _roles_or_none(self, user: str) -> list[str] | None:
        try:
            return await self.auth.user_roles(user)
        except NotFoundError:
            return None

    # Users -----------------------------------------------------------------------------------------

    async def user_list(self) -> UserListResult:
        users: list[UserInfo] = []
        for name in await self.auth.user_list():
            with contextlib.suppress(NotFoundError):  # deleted since the listing
                users.append(UserInfo(name=name, roles=await self.auth.user_roles(name)))
        return UserListResult(users=users)

    async def user_get(self, name: str) -> UserInfo:
        guardrails.check_name("user", name)
        return UserInfo(name=name, roles=await self.auth.user_roles(name))

    async def user_add(
        self, name: str, password: str | None = None, roles: Sequence[str] = (), dry_run: bool = False
    ) -> UserAddResult:
        """Create a user holding ``roles``; without a password, a strong one is generated and returned once.
        ``dry_run`` checks everything (the user is new, the roles exist) and generates nothing."""
        guardrails.check_name("user", name)
        wanted = list(dict.fromkeys(roles))
        for role in wanted:
            guardrails.check_name("role", role)
        generated = password is None
        if password is not None:
            check_password(password)
        for role in wanted:
            if role != ROOT:  # role root is built in; the others must exist before anything is written
                await self.auth.role_permissions(role)
        holding = f" holding roles: {_listed(wanted)}" if wanted else " holding no roles"
        secret = ", with a generated password (shown once)" if generated else ""
        change = f"create etcd user {name}{holding}{secret}"
        if dry_run:
            if await self._roles_or_none(name) is not None:
                raise already_exists("user", name)
            return UserAddResult(
                name=name, roles=sorted(wanted), password_generated=generated, dry_run=True, change=change
            )
        if password is None:
            password = generate_password()
        await self.auth.user_add(name, password)
        try:
            for role in wanted:
                await self.auth.user_grant_role(name, role)
        except BaseException:
            # Undo our own first step, also when cancelled; if that fails too, the first error still wins.
            with anyio.CancelScope(shield=True), contextlib.suppress(KkEtcdError):
                await self.auth.user_delete(name)
            raise
        return UserAddResult(
            name=name,
            roles=sorted(wanted),
            password_generated=generated,
            password=password if generated else None,
            change=change,
        )

    async def user_delete(self, name: str, dry_run: bool = False) -> UserDeleteResult:
        """Delete a user; ``dry_run`` only reads it and says what would go."""
        guardrails.check_name("user", name)
        guardrails.check_user_delete(name, self.connected_as)
        roles = await self.auth.user_roles(name)
        holds = f"who holds roles: {_listed(roles)}" if roles else "who holds no roles"
        change = f"delete etcd user {name}, {holds}"
        removes = [f"etcd user {name} and its access"]
        if dry_run:
            return UserDeleteResult(name=name, deleted=False, dry_run=True, change=change, removes=removes)
        await self.auth.user_delete(name)
        return UserDeleteResult(name=name, change=change, removes=removes)

    async def user_change_password(
        self, name: str, password: str | None = None, dry_run: bool = False
    ) -> PasswordChangeResult:
        """Set a user's password (generated when not given); the old one stops working at once.
        ``dry_run`` checks the user exists (and the password is strong enough) and generates nothing."""
        guardrails.check_name("user", name)
        guardrails.check_password_change(name, self.connected_as)
        generated = password is None
        if password is not None:
            check_password(password)
        new = "a generated password (shown once)" if generated else "the password given"
        change = f"set the password of etcd user {name} to {new}"
        removes = [f"the current password of etcd user {name}: whoever logs in with it is refused from now on"]
        if dry_run:
            await self.auth.user_roles(name)  # NotFoundError when there is no such user
            return PasswordChangeResult(
                name=name, password_generated=generated, dry_run=True, change=change, removes=removes
            )
        if password is None:
            password = generate_password()
        await self.auth.user_change_password(name, password)
        return PasswordChangeResult(
            name=name,
            password_generated=generated,
            password=password if generated else None,
            change=change,
            removes=removes,
        )

    async def user_grant_role(self, name: str, role: str, dry_run: bool = False) -> UserRoleChange:
        """Grant a role; ``dry_run`` returns the roles the user would hold, granting nothing."""
        guardrails.check_name("user", name)
        guardrails.check_name("role", role)
        roles = await self.auth.user_roles(name)
        if role != ROOT:
            await self.auth.role_permissions(role)  # NotFoundError for a role that does not exist
        changed = role not in roles
        if changed:
            change = f"grant role {role} to etcd user {name}"
        else:
            change = f"grant nothing: etcd user {name} already holds role {role}"
        if dry_run:
            after = sorted({*roles, role})
            return UserRoleChange(name=name, roles=after, changed=changed, dry_run=True, change=change)
        await self.auth.user_grant_role(name, role)
        info = await self.user_get(name)
        return UserRoleChange(name=name, roles=info.roles, changed=changed, change=change)

    async def user_revoke_role(self, name: str, role: str, dry_run: bool = False) -> UserRoleChange:
        """Revoke a role; ``dry_run`` returns the roles the user would keep, revoking nothing."""
        guardrails.check_name("user", name)
        guardrails.check_name("role", role)
        guardrails.check_role_revoke(name, role)
        roles = await self.auth.user_roles(name)
        kept = [r for r in roles if r != role]
        removes = []
        if role in roles:
            keeps = f"who keeps roles: {_listed(kept)}" if kept else "who then holds no roles"
            change = f"revoke role {role} from etcd user {name}, {keeps}"
            removes = [f"role {role} of etcd user {name}, with the permissions it gives"]
        else:
            change = f"revoke nothing: etcd user {name} does not hold role {role}"
        if dry_run:
            return UserRoleChange(
                name=name, roles=kept, changed=role in roles, dry_run=True, change=change, removes=removes
            )
        await self.auth.user_revoke_role(name, role)
        after = await self.user_get(name)
        return UserRoleChange(name=name, roles=after.roles, changed=role in roles, change=change, removes=removes)

    # Roles -----------------------------------------------------------------------------------------

    async def role_list(self) -> RoleListResult:
        roles: list[RoleInfo] = []
        for name in await self.auth.role_list():
            with contextlib.suppress(NotFoundError):  # deleted since the listing
                roles.append(await self.role_get(name))
        return RoleListResult(roles=roles)

    async def role_get(self, name: str) -> RoleInfo:
        guardrails.check_name("role", name)
        try:
            perms = await self.auth.role_permissions(name)
        except NotFoundError:
            if name == ROOT:  # built in: granted and honoured by etcd even though it was never added
                return RoleInfo(name=ROOT, permissions=[_ROOT_PERMISSION])
            raise
        return RoleInfo(name=name, permissions=[key_permission(p) for p in perms])

    async def role_add(self, name: str, dry_run: bool = False) -> RolePermissionChange:
        """Create a role without permissions; ``dry_run`` checks that it is new."""
        guardrails.check_name("role", name)
        change = f"create etcd role {name}, without permissions"
        if dry_run:
            if name == ROOT or await self._permissions_or_none(name) is not None:
                raise already_exists("role", name)
            return RolePermissionChange(name=name, permissions=[], dry_run=True, change=change)
        await self.auth.role_add(name)
        return RolePermissionChange(name=name, permissions=[], change=change)

    async def _permissions_or_none(self, role: str) -> list[EtcdKeyPermission] | None:
        try:
            return await self.auth.role_permissions(role)
        except NotFoundError:
            return None

    async def role_delete(self, name: str, dry_run: bool = False) -> RoleDeleteResult:
        """Delete a role; ``dry_run`` only reads it and the users holding it, and says what would go."""
        guardrails.check_name("role", name)
        guardrails.check_role_delete(name)
        role = await self.role_get(name)
        holders = [user.name for user in (await self.user_list()).users if name in user.roles]
        perms = ", ".join(describe_permission(p) for p in role.permissions[:10]) or "none"
        more = f", ... ({len(role.permissions) - 10} more)" if len(role.permissions) > 10 else ""
        lose = f"the users holding it lose it: {_listed(holders)}" if holders else "no user holds it"
        change = f"delete etcd role {name} (key permissions: {perms}{more}); {lose}"
        removes = [f"etcd role {name}, and the permissions it gives its users"]
        if dry_run:
            return RoleDeleteResult(name=name, deleted=False, dry_run=True, change=change, removes=removes)
        await self.auth.role_delete(name)
        return RoleDeleteResult(name=name, change=change, removes=removes)

    async def role_grant_permission(
        self,
        role: str,
        key: str,
        permission: PermissionKind = "read",
        range_end: str | None = None,
        prefix: bool = False,
        dry_run: bool = False,
    ) -> RolePermissionChange:
        """Grant ``permission`` on a key, range or prefix. etcd replaces a grant on exactly that range, so a
        narrower grant takes away what the old one allowed (readwrite -> read takes write away): ``removes``
        says so. ``dry_run`` returns the permissions the role would have, granting nothing."""
        guardrails.check_name("role", role)
        start, end = key_range(key, range_end, prefix)
        perms = await self.auth.role_permissions(role)
        what = describe_range(key, range_end, prefix)
        same_range = [p for p in perms if p.key == start and p.range_end == end]
        had = {kind for p in same_range for kind in _KINDS[p.kind]}
        lost = sorted(had - _KINDS[permission])
        removes = [f"{kind} permission of etcd role {role} on {what}" for kind in lost]
        changed = [p.kind for p in same_range] != [permission]
        if not changed:
            change = f"grant nothing: etcd role {role} already has {permission} on {what}"
        elif same_range:
            old = "/".join(sorted({p.kind for p in same_range}))
            change = f"replace the {old} permission of etcd role {role} on {what} by {permission}"
        else:
            change = f"grant {permission} on {what} to etcd role {role}"
        if dry_run:
            granted = EtcdKeyPermission(key=start, range_end=end, kind=permission)
            after = [key_permission(p) for p in perms if p not in same_range] + [key_permission(granted)]
            return RolePermissionChange(
                name=role, permissions=after, changed=changed, dry_run=True, change=change, removes=removes
            )
        await self.auth.role_grant_permission(role, start, end, permission)
        info = await self.role_get(role)
        return RolePermissionChange(
            name=role, permissions=info.permissions, changed=changed, change=change, removes=removes
        )

    async def role_revoke_permission(
        self, role: str, key: str, range_end: str | None = None, prefix: bool = False, dry_run: bool = False
    ) -> RolePermissionChange:
        """Revoke the grant on exactly that range; ``dry_run`` returns the permissions the role would keep."""
        guardrails.check_name("role", role)
        start, end = key_range(key, range_end, prefix)
        perms = await self.auth.role_permissions(role)
        matching = [p for p in perms if p.key == start and p.range_end == end]
        what = describe_range(key, range_end, prefix)
        removes = []
        if matching:
            kinds = "/".join(sorted({p.kind for p in matching}))
            change = f"revoke {kinds} permission on {what} from etcd role {role}"
            removes = [f"{kinds} permission of etcd role {role} on {what}"]
        else:
            change = f"revoke nothing: etcd role {role} has no permission on exactly {what}"
        if dry_run:
            kept = [key_permission(p) for p in perms if p not in matching]
            return RolePermissionChange(
                name=role, permissions=kept, changed=bool(matching), dry_run=True, change=change, removes=removes
            )
        await self.auth.role_revoke_permission(role, start, end)
        after = await self.role_get(role)
        return RolePermissionChange(
            name=role, permissions=after.permissions, changed=bool(matching), change=change, removes=removes
        )
