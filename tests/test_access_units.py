"""Access administration without I/O: passwords, key ranges, permission display, guardrails."""

from __future__ import annotations

import pytest

from kk_etcd_mcp.access import UserAddResult
from kk_etcd_mcp.access import guardrails as g
from kk_etcd_mcp.access.passwords import ALPHABET, GENERATED_LENGTH, check_password, generate_password
from kk_etcd_mcp.access.service import key_permission, key_range
from kk_etcd_mcp.errors import InvalidArgumentError
from kk_etcd_mcp.etcd.auth import KeyPermission, describe_range


def test_generated_passwords_are_long_random_and_shell_safe() -> None:
    passwords = {generate_password() for _ in range(200)}
    assert len(passwords) == 200
    for pw in passwords:
        assert len(pw) == GENERATED_LENGTH >= 32
        assert set(pw) <= set(ALPHABET)
        check_password(pw)


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("", "must not be empty"),
        (" \t ", "must not be empty"),
        ("é" * 37, "74 bytes long"),  # 37 characters, 74 bytes: bcrypt counts bytes
    ],
)
def test_unusable_passwords_are_refused_without_repeating_them(password: str, expected: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        check_password(password)
    assert expected in str(err.value)
    if password.strip():
        assert password not in str(err.value)


def test_a_72_byte_password_is_accepted() -> None:
    check_password("p" * 72)


def test_result_repr_never_shows_the_password() -> None:
    result = UserAddResult(name="bob", roles=[], password_generated=True, password="s3cr3t-in-repr")
    assert "s3cr3t-in-repr" not in repr(result) and "s3cr3t-in-repr" not in str(result)
    assert result.model_dump(mode="json")["password"] == "s3cr3t-in-repr"  # the one place it is shown


@pytest.mark.parametrize(
    ("key", "range_end", "prefix", "expected"),
    [
        ("app/x", None, False, (b"app/x", b"")),
        ("app/", None, True, (b"app/", b"app0")),
        ("", None, True, (b"", b"\0")),  # every key
        ("a", "c", False, (b"a", b"c")),
        ("a", "\0", False, (b"a", b"\0")),  # every key from a on
    ],
)
def test_key_range(key: str, range_end: str | None, prefix: bool, expected: tuple[bytes, bytes]) -> None:
    assert key_range(key, range_end, prefix) == expected


@pytest.mark.parametrize(
    ("key", "range_end", "prefix", "message"),
    [
        ("app/", "b", True, "either prefix=true or a range_end"),
        ("", None, False, "the key must not be empty"),
        ("b", "a", False, "must sort after the key"),
        ("b", "b", False, "must sort after the key"),
        ("b", "", False, "is ambiguous"),
    ],
)
def test_bad_key_ranges(key: str, range_end: str | None, prefix: bool, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        key_range(key, range_end, prefix)


@pytest.mark.parametrize(
    ("key", "range_end", "shown_end", "prefix", "described"),
    [
        (b"app/x", b"", None, False, "key app/x"),
        (b"app/", b"app0", "app0", True, "range [app/, app0)"),
        (b"", b"\0", "\0", True, "every key"),
        (b"a", b"\0", "\0", False, "every key from 'a'"),
        (b"a", b"c", "c", False, "range [a, c)"),
    ],
)
def test_permission_display(key: bytes, range_end: bytes, shown_end: str | None, prefix: bool, described: str) -> None:
    shown = key_permission(KeyPermission(key=key, range_end=range_end, kind="readwrite"))
    assert (shown.key, shown.range_end, shown.prefix, shown.permission) == (
        key.decode(),
        shown_end,
        prefix,
        "readwrite",
    )
    assert describe_range(key, range_end) == described


def test_guardrails_refuse_what_would_lock_out_root_or_the_server() -> None:
    for check, args, message in (
        (g.check_user_delete, ("root", "alice"), "refusing to delete user root"),
        (g.check_user_delete, ("alice", "alice"), "this server connects to etcd as alice"),
        (g.check_role_delete, ("root",), "refusing to delete role root"),
        (g.check_role_revoke, ("root", "root"), "refusing to revoke role root from user root"),
        (g.check_password_change, ("alice", "alice"), "refusing to change the password of user alice"),
        (g.check_enable_credentials, (None,), "without credentials"),
        (g.check_root_ready, (None,), "etcd has no user root"),
        (g.check_root_ready, (["reader"],), "user root does not hold role root"),
        (g.check_server_user_exists, ("ghost", None), "etcd has no such user"),
        (g.check_name, ("user", ""), "the user name must not be empty"),
        (g.check_name, ("role", "é" * 129), "the role name is 258 bytes long; at most 256 are allowed"),
    ):
        with pytest.raises(InvalidArgumentError, match=message):
            check(*args)  # type: ignore[operator]


def test_guardrails_allow_everything_else() -> None:
    g.check_user_delete("bob", "alice")
    g.check_user_delete("bob", None)
    g.check_role_delete("reader")
    g.check_role_revoke("root", "reader")
    g.check_role_revoke("alice", "root")
    g.check_password_change("bob", "alice")
    g.check_enable_credentials("alice")
    g.check_root_ready(["reader", "root"])
    assert g.check_server_user_exists("alice", ["root"]) is None
    assert g.check_server_user_exists("root", []) is None
    note = g.check_server_user_exists("bob", ["reader"])
    assert note is not None and "bob, who does not hold role root" in note
