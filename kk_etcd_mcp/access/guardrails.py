"""What access administration refuses to do, as pure checks (no I/O), each with a message that says why.

etcd itself protects user root and role root only while authentication is on; these rules hold always,
and also protect the user this server connects as, whose loss would lock the server out of etcd.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InvalidArgumentError

ROOT = "root"  # etcd's administrator: the user root, holding the built-in role root
# etcd 3.5 stores a user or role under its name as a bbolt key and exits (fatal "key too large") on a
# name over 32 KiB; found by tests/test_fuzz_tools.py. No real name comes near this limit.
MAX_NAME_BYTES = 256


def check_name(what: str, name: str) -> None:
    if not name:
        raise InvalidArgumentError(f"the {what} name must not be empty")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise InvalidArgumentError(f"the {what} name is {size} bytes long; at most {MAX_NAME_BYTES} are allowed")


def check_user_delete(name: str, connected_as: str | None) -> None:
    if name == ROOT:
        raise InvalidArgumentError(
            "refusing to delete user root: etcd needs it to enable authentication and to administer it. "
            "Nothing was changed."
        )
    if name == connected_as:
        raise InvalidArgumentError(
            f"refusing to delete user {name}: this server connects to etcd as {name} and would lock itself out. "
            "Nothing was changed; delete it with etcdctl, or from a server that connects as another user."
        )


def check_role_delete(role: str) -> None:
    if role == ROOT:
        raise InvalidArgumentError(
            "refusing to delete role root: it is what makes user root the administrator. Nothing was changed."
        )


def check_role_revoke(name: str, role: str) -> None:
    if name == ROOT and role == ROOT:
        raise InvalidArgumentError(
            "refusing to revoke role root from user root: root would no longer administer etcd "
            "(and etcd cannot enable authentication without it). Nothing was changed."
        )


def check_password_change(name: str, connected_as: str | None) -> None:
    if name == connected_as:
        raise InvalidArgumentError(
            f"refusing to change the password of user {name}: this server connects to etcd as {name} with "
            "its configured password and would lose access at its next login. Nothing was changed; change it "
            "with etcdctl, update KK_ETCD_PASSWORD (or KK_ETCD_PASSWORD_FILE), then restart the server."
        )


def check_enable_credentials(connected_as: str | None) -> None:
    """Before auth_enable: a server without credentials would lose all access."""
    if connected_as is None:
        raise InvalidArgumentError(
            "refusing to enable authentication: this server connects to etcd without credentials and would "
            "lock itself out. Configure KK_ETCD_USERNAME and KK_ETCD_PASSWORD (or KK_ETCD_PASSWORD_FILE) for "
            "a user that holds the roles the server needs (root, to keep administering etcd), restart the "
            "server, then enable authentication. Nothing was changed."
        )


def check_root_ready(root_roles: Sequence[str] | None) -> None:
    """Before auth_enable: etcd's own rule. ``root_roles`` are user root's roles (None: no user root)."""
    if root_roles is None:
        raise InvalidArgumentError(
            "refusing to enable authentication: etcd has no user root, and etcd enables authentication only "
            "when user root exists and holds role root. Create it with user_add(name='root', roles=['root']) "
            "(a strong password is generated and shown once; keep it safe), then enable authentication. "
            "Nothing was changed."
        )
    if ROOT not in root_roles:
        raise InvalidArgumentError(
            "refusing to enable authentication: user root does not hold role root, which etcd requires. "
            "Grant it with user_grant_role(name='root', role='root'), then enable authentication. "
            "Nothing was changed."
        )


def check_server_user_exists(connected_as: str, roles: Sequence[str] | None) -> str | None:
    """Before auth_enable: the server's own user must exist. Returns a note when it cannot administer."""
    if roles is None:
        raise InvalidArgumentError(
            f"refusing to enable authentication: this server connects as {connected_as}, but etcd has no such "
            f"user, so the server would lock itself out. Create {connected_as} with the roles it needs first "
            "(user_add), then enable authentication. Nothing was changed."
        )
    if connected_as != ROOT and ROOT not in roles:
        return (
            f"this server connects as {connected_as}, who does not hold role root: from now on it can use only "
            f"the permissions of {connected_as}'s roles, and cannot administer users, roles or authentication "
            "(disabling it again needs role root)."
        )
    return None
