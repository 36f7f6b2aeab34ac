"""Pure units without I/O: the key-range algebra of KeyPolicy and the value formats."""

from __future__ import annotations

import pytest

from kk_etcd_mcp.config_center.formats import decode_value, encode_value, parse_value
from kk_etcd_mcp.config_center.keys import (
    KeyPolicy,
    ReservedPrefix,
    covers,
    intersect,
    prefix_range,
    subtract,
    union,
)
from kk_etcd_mcp.errors import ForbiddenKeyError, InvalidValueError


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (b"", (b"", None)),
        (b"a/", (b"a/", b"a0")),
        (b"a\xff", (b"a\xff", b"b")),
        (b"\xff\xff", (b"\xff\xff", None)),
    ],
)
def test_prefix_range(prefix: bytes, expected: tuple[bytes, bytes | None]) -> None:
    assert prefix_range(prefix) == expected


def test_range_algebra() -> None:
    assert intersect((b"a", b"c"), (b"b", None)) == (b"b", b"c")
    assert intersect((b"a", b"b"), (b"b", b"c")) is None
    assert subtract([(b"", None)], (b"k", b"l")) == [(b"", b"k"), (b"l", None)]
    assert subtract([(b"a", b"c")], (b"", None)) == []
    assert union([(b"b", b"d"), (b"a", b"c"), (b"x", None)]) == [(b"a", b"d"), (b"x", None)]
    assert covers([(b"a", b"b"), (b"b", b"c")], (b"a", b"c"))
    assert not covers([(b"a", b"b")], (b"a", b"c"))


def registry(root: str = "kk_service/", audit_readable: bool = True) -> list[ReservedPrefix]:
    return [
        ReservedPrefix(root, "the registry", instead="use service_register", readers="service_list"),
        ReservedPrefix(
            f"{root}audit/", "the audit trail", instead="no", readers="audit_log", may_read=lambda: audit_readable
        ),
    ]


def test_policy_allows_only_allowed_minus_denied() -> None:
    policy = KeyPolicy(["app/", "cfg/"], ["app/secret/"], registry())
    for check in (policy.check_read, policy.check_write):
        check(b"app/db")
        check(b"cfg/x")
        for key in (b"app/secret/pw", b"other/x", b"ap", b"kk_service/x"):
            with pytest.raises(ForbiddenKeyError, match="is outside the allowed prefixes"):
                check(key)
    policy.check_write_prefix(b"app/db/")
    with pytest.raises(ForbiddenKeyError):
        policy.check_write_prefix(b"app/")  # would reach app/secret/
    assert policy.readable(b"", include_internal=False) == [
        (b"app/", b"app/secret/"),
        (b"app/secret0", b"app0"),
        (b"cfg/", b"cfg0"),
    ]
    with pytest.raises(ForbiddenKeyError):
        policy.readable(b"other/", include_internal=False)


def test_reserved_prefixes_are_never_written_and_read_only_with_the_owners_consent() -> None:
    policy = KeyPolicy([""], reserved=registry(audit_readable=False))
    # Writes: refused in the words of the innermost owner, for keys and whole prefixes.
    with pytest.raises(ForbiddenKeyError, match=r"key kk_service/x is in the registry \('kk_service/'\).*service_reg"):
        policy.check_write(b"kk_service/x")
    with pytest.raises(ForbiddenKeyError, match=r"in the audit trail \('kk_service/audit/'\)"):
        policy.check_write(b"kk_service/audit/entry/1")
    for prefix in (b"kk_service/", b"kk_service/audit/", b"kk_service/reg"):
        with pytest.raises(ForbiddenKeyError, match="Nothing was written"):
            policy.check_write_prefix(prefix)
    policy.check_write(b"kk_service")  # a sibling, not under the root
    # A prefix write around the registry leaves it out.
    assert policy.writable(b"") == [(b"", b"kk_service/"), (b"kk_service0", None)]
    assert policy.writable(b"k") == [(b"k", b"kk_service/"), (b"kk_service0", b"l")]
    # Reads: the registry's data yes, the audit trail only when its owner's scope allows.
    policy.check_read(b"kk_service/registration/Http/a/h:1")
    with pytest.raises(ForbiddenKeyError, match=r"may read only through audit_log\. Nothing was read"):
        policy.check_read(b"kk_service/audit/head")
    KeyPolicy([""], reserved=registry(audit_readable=True)).check_read(b"kk_service/audit/head")


def test_reserved_prefixes_hidden_from_listings_unless_asked() -> None:
    policy = KeyPolicy([""], reserved=registry(audit_readable=False))
    assert policy.readable(b"k", include_internal=False) == [(b"k", b"kk_service/"), (b"kk_service0", b"l")]
    # Asked: the registry is shown, its audit trail only to who may read it.
    assert policy.readable(b"k", include_internal=True) == [(b"k", b"kk_service/audit/"), (b"kk_service/audit0", b"l")]
    assert policy.readable(b"kk_service/", include_internal=False) == []
    with pytest.raises(ForbiddenKeyError, match="audit_log"):
        policy.readable(b"kk_service/audit/", include_internal=True)
    readable = KeyPolicy([""], reserved=registry(audit_readable=True))
    assert readable.readable(b"k", include_internal=True) == [(b"k", b"l")]


@pytest.mark.parametrize(
    ("raw", "fmt", "data"),
    [
        (b'{"a": 1}', "json", {"a": 1}),
        (b"[1, 2]", "json", [1, 2]),
        (b"a: 1\nb: [x]\n", "yaml", {"a": 1, "b": ["x"]}),
        (b"- one\n- two\n", "yaml", ["one", "two"]),
        (b"plain words", "text", None),
        (b"42", "text", None),
        (b"{not json", "text", None),
        (b"", "text", None),
    ],
)
def test_decode_recognises_format(raw: bytes, fmt: str, data: object) -> None:
    decoded = decode_value(raw)
    assert (decoded.value, decoded.format, decoded.encoding, decoded.data) == (raw.decode(), fmt, "utf-8", data)


def test_decode_non_utf8_is_base64() -> None:
    decoded = decode_value(b"\xff\x00\xfe")
    assert (decoded.value, decoded.encoding, decoded.data) == ("/wD+", "base64", None)


def test_parse_errors_name_line_and_column() -> None:
    with pytest.raises(InvalidValueError, match=r"invalid json at line 2, column 8"):
        parse_value('{"a": 1,\n  "b": }', "json")
    with pytest.raises(InvalidValueError, match=r"invalid yaml at line \d+, column \d+"):
        parse_value("a: [1, 2\nb: 3", "yaml")
    with pytest.raises(InvalidValueError, match="the safe loader refuses"):  # it builds no objects
        parse_value("!!python/object/apply:os.system ['true']", "yaml")


def test_encode_keeps_strings_and_serialises_structures() -> None:
    assert encode_value('{"a":1}', "json") == b'{"a":1}'
    assert encode_value({"a": [1]}, "json") == b'{\n  "a": [\n    1\n  ]\n}'
    assert encode_value({"a": [1]}, "yaml") == b"a:\n- 1\n"
    with pytest.raises(InvalidValueError, match="format text takes a string"):
        encode_value({"a": 1}, "text")
