"""Value formats of the configuration center: validating what is written, recognising what is read.

etcd stores bytes with no content type, so a read recognises the format: a JSON object or array is
``json``, a YAML mapping or sequence is ``yaml``, anything else is ``text``. Values that are not
UTF-8 are returned base64-encoded.

Limits, so that a value cannot make the server (or the model reading the result) pay without bound:

- YAML goes through the safe loader only, and at most ``MAX_YAML_CHARS`` of it is parsed.
- Before a YAML document is built, its event stream is scanned (linear in the text, nothing is
  expanded): at most ``MAX_YAML_ALIASES`` alias uses, which together may add at most
  ``MAX_ALIAS_EXPANSION`` nodes, and no alias inside its own anchor. PyYAML shares aliased nodes,
  so a "billion laughs" document loads cheaply, but every JSON rendering of it (tool results)
  would expand it in full; it is refused at the alias that crosses the limit.
- JSON and YAML nest at most ``MAX_DEPTH`` levels (the MCP client's own JSON parser stops at a
  few hundred, and the interpreter's stack earlier than that for some paths).

Writing refuses a value over a limit with InvalidValueError; reading shows such a value as text.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent

from ..errors import InvalidValueError

# libyaml's safe loader/dumper when PyYAML was built with it: several times faster, same semantics.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

ValueFormat = Literal["json", "yaml", "text"]
Encoding = Literal["utf-8", "base64"]

MAX_DEPTH = 64
MAX_YAML_CHARS = 2 * 1024 * 1024  # above etcd's default request limit (1.5 MiB): never hit by a stored value
MAX_YAML_ALIASES = 100
MAX_ALIAS_EXPANSION = 10_000


@dataclass(frozen=True, slots=True)
class DecodedValue:
    value: str
    format: ValueFormat
    encoding: Encoding
    data: Any = None


def parse_value(text: str, fmt: ValueFormat) -> Any:
    """Parse ``text`` as ``fmt``; raise InvalidValueError naming line and column when it does not parse.

    A value over a limit (see the module docstring) is refused the same way.
    """
    try:
        if fmt == "json":
            return load_json(text)
        if fmt == "yaml":
            return load_yaml(text)
    except InvalidValueError as exc:
        raise InvalidValueError(f"{exc} Nothing was written.") from None
    return text


def load_json(text: str) -> Any:
    """``json.loads`` within MAX_DEPTH; InvalidValueError (without "Nothing was written") otherwise."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidValueError(f"invalid json at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None
    except RecursionError:  # the C decoder stops at the interpreter's recursion limit
        raise _too_deep("json") from None
    if _depth(data) > MAX_DEPTH:
        raise _too_deep("json")
    return data


def load_yaml(text: str) -> Any:
    """The safe loader, after the size, alias and depth checks; InvalidValueError otherwise."""
    if len(text) > MAX_YAML_CHARS:
        raise InvalidValueError(
            f"yaml value is {len(text)} characters; at most {MAX_YAML_CHARS} are parsed. "
            "Store it as format text, or split it."
        )
    try:
        _check_yaml_events(text)
        return yaml.load(text, Loader=_YAML_LOADER)  # _YAML_LOADER is a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "does not parse"
        raise InvalidValueError(f"invalid yaml{where}: {problem}.") from None
    except yaml.YAMLError as exc:
        raise InvalidValueError(f"invalid yaml: {exc}.") from None
    except RecursionError:  # only the pure-Python loader recurses per level; the event scan stops sooner
        raise _too_deep("yaml") from None


def _check_yaml_events(text: str) -> None:
    """Refuse deep nesting, too many aliases, and aliases that expand too far, before anything is built.

    Each anchored node's expanded size (in nodes) is known when its event ends; an alias adds that
    size to every collection around it, so the total is counted without expanding anything.
    """
    open_nodes: list[list[Any]] = []  # per open collection: [expanded node count, anchor]
    sizes: dict[str, int] = {}  # anchor -> expanded node count of its (closed) node
    aliases = expansion = 0
    for event in yaml.parse(text, Loader=_YAML_LOADER):
        if isinstance(event, AliasEvent):
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise InvalidValueError(f"yaml value uses more than {MAX_YAML_ALIASES} aliases (*name).")
            if any(anchor == event.anchor for _, anchor in open_nodes):
                raise InvalidValueError(f"yaml alias *{event.anchor} refers to a node that contains it.")
            size = sizes.get(event.anchor or "", 1)  # an undefined alias: the loader reports it
            expansion += size
            if expansion > MAX_ALIAS_EXPANSION:
                raise InvalidValueError(
                    f"yaml aliases would expand to more than {MAX_ALIAS_EXPANSION} nodes "
                    "(a 'billion laughs' document?); write the value without nested aliases."
                )
            _add(open_nodes, size)
        elif isinstance(event, CollectionStartEvent):
            if len(open_nodes) >= MAX_DEPTH:
                raise _too_deep("yaml")
            open_nodes.append([1, event.anchor])
        elif isinstance(event, CollectionEndEvent):
            size, anchor = open_nodes.pop()
            if anchor:
                sizes[anchor] = size
            _add(open_nodes, size)
        elif isinstance(event, ScalarEvent):
            if event.anchor:
                sizes[event.anchor] = 1
            _add(open_nodes, 1)


def _add(open_nodes: list[list[Any]], size: int) -> None:
    if open_nodes:
        open_nodes[-1][0] += size


def _depth(data: Any) -> int:
    """Nesting depth of parsed JSON (iterative: a deep value must not exhaust the stack here)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def _too_deep(fmt: str) -> InvalidValueError:
    return InvalidValueError(f"{fmt} value nests deeper than {MAX_DEPTH} levels; flatten it.")


def encode_value(value: str | dict[str, Any] | list[Any], fmt: ValueFormat) -> bytes:
    """The bytes to store: text as given (validated for json/yaml), or a structure serialised as ``fmt``."""
    if isinstance(value, str):
        parse_value(value, fmt)
        return value.encode()
    if fmt != "text" and _depth(value) > MAX_DEPTH:  # it would be stored, then read back only as text
        raise InvalidValueError(f"{_too_deep(fmt)} Nothing was written.")
    if fmt == "json":
        return json.dumps(value, indent=2, ensure_ascii=False).encode()
    if fmt == "yaml":
        return yaml.dump(value, Dumper=_YAML_DUMPER, sort_keys=False, allow_unicode=True).encode()
    raise InvalidValueError("format text takes a string value; pass format json or yaml for an object or list")


def decode_value(raw: bytes) -> DecodedValue:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return DecodedValue(value=base64.b64encode(raw).decode(), format="text", encoding="base64")
    fmt, data = recognise(text)
    return DecodedValue(value=text, format=fmt, encoding="utf-8", data=data)


def recognise(text: str) -> tuple[ValueFormat, Any]:
    """The format of a stored value, and its data; a value over a limit reads as text."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            data = load_json(text)
        except InvalidValueError:
            pass
        else:
            if isinstance(data, dict | list):
                return "json", data
    if "\n" in stripped or ": " in stripped or stripped.startswith("- "):
        try:
            data = load_yaml(text)
        except InvalidValueError:
            return "text", None
        if isinstance(data, dict | list):
            return "yaml", data
    return "text", None
