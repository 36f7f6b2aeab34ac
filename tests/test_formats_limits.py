"""Pure units: the limits on JSON/YAML values (aliases, billion laughs, depth, size).

Writing (parse_value) refuses a value over a limit with a clear InvalidValueError; reading
(recognise/decode_value) shows it as text without data. Neither ever expands aliases nor recurses
into the interpreter's limit.
"""

from __future__ import annotations

import json

import pytest

from kk_etcd_mcp.config_center.formats import (
    MAX_ALIAS_EXPANSION,
    MAX_DEPTH,
    MAX_YAML_ALIASES,
    MAX_YAML_CHARS,
    decode_value,
    encode_value,
    parse_value,
    recognise,
)
from kk_etcd_mcp.errors import InvalidValueError


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_yaml(depth: int) -> str:
    """Block mappings, one per level: the shape a deep config file has."""
    return "".join(f"{'  ' * level}k{level}:\n" for level in range(depth)) + f"{'  ' * depth}leaf\n"


def refused(text: str, fmt: str) -> str:
    with pytest.raises(InvalidValueError) as caught:
        parse_value(text, fmt)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.endswith("Nothing was written."), message
    return message


# Aliases -----------------------------------------------------------------------------------------


def test_billion_laughs_is_refused_without_expanding() -> None:
    message = refused(billion_laughs(), "yaml")
    assert "billion laughs" in message and str(MAX_ALIAS_EXPANSION) in message
    # Read back (written by another client), it is text, with no data to expand into a result.
    assert recognise(billion_laughs())[:2] == ("text", None)
    assert "shown as text only: yaml aliases would expand" in str(recognise(billion_laughs())[2])
    decoded = decode_value(billion_laughs().encode())
    assert decoded.format == "text" and decoded.data is None and decoded.value == billion_laughs()


def test_a_few_levels_of_aliases_are_fine() -> None:
    # Three levels expand to 9 + 81 + 729 nodes: well under the limit.
    data = parse_value(billion_laughs(3), "yaml")
    assert len(data["c"]) == 9 and data["c"][0][0] == ["lol"] * 9


def test_merge_keys_and_plain_aliases_are_fine() -> None:
    text = "base: &base {host: db, port: 5432}\nprimary:\n  <<: *base\n  role: rw\nreplica:\n  <<: *base\n"
    data = parse_value(text, "yaml")
    assert data["primary"] == {"host": "db", "port": 5432, "role": "rw"}
    assert data["replica"] == {"host": "db", "port": 5432}
    assert recognise(text)[0] == "yaml"


def test_too_many_aliases_are_refused() -> None:
    text = "x: &x 1\nitems:\n" + "".join("  - *x\n" for _ in range(MAX_YAML_ALIASES + 1))
    assert f"more than {MAX_YAML_ALIASES} aliases" in refused(text, "yaml")
    ok = "x: &x 1\nitems:\n" + "".join("  - *x\n" for _ in range(MAX_YAML_ALIASES))
    assert len(parse_value(ok, "yaml")["items"]) == MAX_YAML_ALIASES


@pytest.mark.parametrize("text", ["&x [1, *x]", "a: &x\n  b: *x\n", "&top {a: [*top]}"])
def test_recursive_alias_is_refused(text: str) -> None:
    # PyYAML would build a cyclic object, which no JSON result can hold.
    assert "refers to a node that contains it" in refused(text, "yaml")
    assert recognise(text)[:2] == ("text", None)


def test_undefined_alias_is_a_plain_yaml_error() -> None:
    assert "found undefined alias" in refused("a: *nowhere\n", "yaml")


# Depth -------------------------------------------------------------------------------------------


def test_json_depth_limit() -> None:
    assert parse_value(nested_json(MAX_DEPTH), "json") == json.loads(nested_json(MAX_DEPTH))
    assert f"nests deeper than {MAX_DEPTH} levels" in refused(nested_json(MAX_DEPTH + 1), "json")
    assert recognise(nested_json(MAX_DEPTH + 1))[:2] == ("text", None)


@pytest.mark.parametrize("text", ["[" * 100_000, nested_json(5_000), '{"a":' * 50_000])
def test_very_deep_json_gives_a_clear_error_not_a_recursion_error(text: str) -> None:
    assert f"nests deeper than {MAX_DEPTH} levels" in refused(text, "json")
    assert recognise(text)[:2] == ("text", None)


def test_yaml_depth_limit() -> None:
    assert parse_value(nested_yaml(MAX_DEPTH - 1), "yaml") is not None  # MAX_DEPTH - 1 mappings + a scalar
    assert f"nests deeper than {MAX_DEPTH} levels" in refused(nested_yaml(MAX_DEPTH + 1), "yaml")
    assert f"nests deeper than {MAX_DEPTH} levels" in refused(nested_json(MAX_DEPTH + 1), "yaml")  # flow style
    assert recognise(nested_yaml(MAX_DEPTH + 1))[:2] == ("text", None)


@pytest.mark.parametrize("text", ["[" * 100_000, "- " * 50_000 + "x\n"])
def test_very_deep_yaml_gives_a_clear_error(text: str) -> None:
    message = refused(text, "yaml")
    assert "nests deeper" in message or "nesting depth" in message, message
    assert recognise(text)[:2] == ("text", None)


# Size --------------------------------------------------------------------------------------------


def test_yaml_size_limit() -> None:
    big = "items:\n" + "  - x\n" * (MAX_YAML_CHARS // 6 + 1)
    assert len(big) > MAX_YAML_CHARS
    message = refused(big, "yaml")
    assert f"at most {MAX_YAML_CHARS}" in message and "format text" in message
    assert recognise(big)[:2] == ("text", None)
    # JSON has no size limit of its own here (the value limit applies to every format).
    assert len(parse_value(json.dumps(["x"] * (MAX_YAML_CHARS // 5)), "json")) == MAX_YAML_CHARS // 5


def test_ordinary_values_are_unchanged() -> None:
    assert parse_value('{"a": [1, {"b": null}]}', "json") == {"a": [1, {"b": None}]}
    assert parse_value("a:\n  - 1\n  - two\n", "yaml") == {"a": [1, "two"]}
    assert recognise("a:\n  b: 1\n") == ("yaml", {"a": {"b": 1}}, None)
    assert recognise("plain words") == ("text", None, None)
    assert "invalid json at line 1, column 2" in refused("{bad", "json")
    assert "invalid yaml at line" in refused("a: [1,\n", "yaml")


def test_a_deep_structure_is_not_written() -> None:
    deep: list[object] = []
    for _ in range(MAX_DEPTH):
        deep = [deep]
    for fmt in ("json", "yaml"):
        with pytest.raises(InvalidValueError, match=f"nests deeper than {MAX_DEPTH} levels.*Nothing was written"):
            encode_value(deep, fmt)  # type: ignore[arg-type]
        assert encode_value(deep[0], fmt)  # type: ignore[arg-type]  # MAX_DEPTH levels: fine
