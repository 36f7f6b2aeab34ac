"""Pure units without I/O: the key-range algebra of KeyPolicy and the value formats."""

from __future__ import annotations

import pytest

from kk_etcd_mcp.config_center.formats import decode_value, encode_value, parse_value
from kk_etcd_mcp.config_center.keys import KeyPolicy, covers, intersect, prefix_range, subtract, union
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


def test_policy_allows_only_allowed_minus_denied() -> None:
    policy = KeyPolicy(["app/", "cfg/"], ["app/secret/"], internal_prefix="kk_service/")
    policy.check_key(b"app/db")
    policy.check_key(b"cfg/x")
    for key in (b"app/secret/pw", b"other/x", b"ap", b"kk_service/x"):
        with pytest.raises(ForbiddenKeyError, match="is outside the allowed prefixes"):
            policy.check_key(key)
    policy.check_prefix(b"app/db/")
    with pytest.raises(ForbiddenKeyError):
        policy.check_prefix(b"app/")  # would reach app/secret/
    assert policy.readable(b"", include_internal=False) == [
        (b"app/", b"app/secret/"),
        (b"app/secret0", b"app0"),
        (b"cfg/", b"cfg0"),
    ]
    with pytest.raises(ForbiddenKeyError):
        policy.readable(b"other/", include_internal=False)


def test_internal_prefix_hidden_from_listings_unless_asked() -> None:
    policy = KeyPolicy([""], internal_prefix="kk_service/")
    assert policy.readable(b"k", include_internal=False) == [(b"k", b"kk_service/"), (b"kk_service0", b"l")]
    assert policy.readable(b"k", include_internal=True) == [(b"k", b"l")]
    assert policy.writable(b"", include_internal=False) == [(b"", b"kk_service/"), (b"kk_service0", None)]


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
