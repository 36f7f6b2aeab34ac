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

What a read returns must be plain JSON (tool results are JSON): objects with string keys, arrays,
strings, finite numbers, booleans and null. YAML's dates and timestamps become ISO 8601 strings and
its scalar keys (``200:``, ``true:``) strings, as JSON renderings of YAML usually do; what has no JSON
form (``!!binary``, ``!!set``, ``.inf``/``.nan``, an integer longer than Python's 4,300-digit limit,
an unknown tag) makes the value unrepresentable.

Writing refuses, with InvalidValueError and the reason, a json/yaml value that is over a limit or
unrepresentable; reading shows such a value as text and says why (``note``).
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import sys
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent

from ..errors import InvalidArgumentError, InvalidValueError

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
    note: str | None = None  # why a value that parses as json/yaml is shown as text only


class UnrepresentableValueError(InvalidValueError):
    """The value parses, but over a limit or into something JSON cannot carry: it reads back as text."""


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
    except ValueError:  # an integer over the interpreter's digit limit (int_max_str_digits)
        raise _long_integer("json") from None
    if _depth(data) > MAX_DEPTH:
        raise _too_deep("json")
    return plain(data, "json")


def load_yaml(text: str) -> Any:
    """The safe loader, after the size, alias and depth checks; InvalidValueError otherwise."""
    if len(text) > MAX_YAML_CHARS:
        raise InvalidValueError(
            f"yaml value is {len(text)} characters; at most {MAX_YAML_CHARS} are parsed. "
            "Store it as format text, or split it."
        )
    try:
        _check_yaml_events(text)
        data = yaml.load(text, Loader=_YAML_LOADER)  # _YAML_LOADER is a safe loader
    except yaml.constructor.ConstructorError as exc:  # it parses, into something the safe loader cannot build
        problem = exc.problem or "cannot be built"
        raise UnrepresentableValueError(f"yaml value uses what the safe loader refuses: {problem}.") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "does not parse"
        raise InvalidValueError(f"invalid yaml{where}: {problem}.") from None
    except yaml.YAMLError as exc:
        raise InvalidValueError(f"invalid yaml: {exc}.") from None
    except RecursionError:  # only the pure-Python loader recurses per level; the event scan stops sooner
        raise _too_deep("yaml") from None
    except ValueError:  # an integer over the interpreter's digit limit (int_max_str_digits)
        raise _long_integer("yaml") from None
    return plain(data, "yaml")


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
                raise UnrepresentableValueError(f"yaml value uses more than {MAX_YAML_ALIASES} aliases (*name).")
            if any(anchor == event.anchor for _, anchor in open_nodes):
                raise UnrepresentableValueError(f"yaml alias *{event.anchor} refers to a node that contains it.")
            size = sizes.get(event.anchor or "", 1)  # an undefined alias: the loader reports it
            expansion += size
            if expansion > MAX_ALIAS_EXPANSION:
                raise UnrepresentableValueError(
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
    return UnrepresentableValueError(f"{fmt} value nests deeper than {MAX_DEPTH} levels; flatten it.")


def _long_integer(fmt: str) -> InvalidValueError:
    return UnrepresentableValueError(
        f"{fmt} value holds an integer longer than {sys.get_int_max_str_digits()} digits, which cannot be read "
        "as a number; write it as a string."
    )


def plain(data: Any, fmt: str) -> Any:
    """``data`` as plain JSON (see the module docstring), or UnrepresentableValueError saying what is not.

    Called after the depth check, so the recursion is bounded by MAX_DEPTH.
    """

    def convert(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            converted: dict[str, Any] = {}
            for key, value in node.items():
                name = _key_text(key, fmt, path)
                if name in converted:
                    raise UnrepresentableValueError(f"{fmt} value has two keys that read as {name!r} at {path}.")
                converted[name] = convert(value, f"{path}.{name}")
            return converted
        if isinstance(node, list | tuple):  # tuples: YAML's !!pairs and !!omap
            return [convert(item, f"{path}[{i}]") for i, item in enumerate(node)]
        if isinstance(node, str):
            if not node.isascii() and not _encodable(node):
                raise UnrepresentableValueError(
                    f"{fmt} value holds a lone UTF-16 surrogate (an escape such as \\ud800) at {path}, "
                    "which no UTF-8 JSON text can carry."
                )
            return node
        if node is None or isinstance(node, bool | int):
            return node
        if isinstance(node, float):
            if not math.isfinite(node):
                raise UnrepresentableValueError(f"{fmt} value holds {node} at {path}, which JSON cannot carry.")
            return node
        if isinstance(node, datetime.date):  # also datetime; YAML timestamps
            return node.isoformat()
        raise UnrepresentableValueError(f"{fmt} value holds {_kind(node)} at {path}, which JSON cannot carry.")

    return convert(data, "$")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _key_text(key: Any, fmt: str, path: str) -> str:
    if isinstance(key, str) and (key.isascii() or _encodable(key)):
        return key
    if isinstance(key, datetime.date):
        return key.isoformat()
    if key is None or isinstance(key, bool | int | float):
        try:
            return json.dumps(key)  # 200 -> "200", True -> "true", None -> "null"
        except ValueError:  # an integer over the digit limit, or a float that is not finite
            pass
    raise UnrepresentableValueError(f"{fmt} value has a key JSON cannot carry ({_kind(key)}) at {path}.")


def _kind(node: Any) -> str:
    if isinstance(node, bytes):
        return "binary data (!!binary)"
    if isinstance(node, set | frozenset):
        return "a set (!!set)"
    if isinstance(node, float):
        return str(node)
    if isinstance(node, int):
        return "an integer over the digit limit"
    return f"a {type(node).__name__}"


def encode_value(value: str | dict[str, Any] | list[Any], fmt: ValueFormat) -> bytes:
    """The bytes to store: text as given (validated for json/yaml), or a structure serialised as ``fmt``."""
    if isinstance(value, str):
        parse_value(value, fmt)
        return utf8(value, "the value")
    if fmt != "text":  # what would be stored, then read back only as text, is refused
        try:
            if _depth(value) > MAX_DEPTH:
                raise _too_deep(fmt)
            value = plain(value, fmt)
        except InvalidValueError as exc:
            raise InvalidValueError(f"{exc} Nothing was written.") from None
    if fmt == "json":
        return utf8(json.dumps(value, indent=2, ensure_ascii=False), "the value")
    if fmt == "yaml":
        return utf8(yaml.dump(value, Dumper=_YAML_DUMPER, sort_keys=False, allow_unicode=True), "the value")
    raise InvalidValueError("format text takes a string value; pass format json or yaml for an object or list")


def decode_value(raw: bytes) -> DecodedValue:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return DecodedValue(value=base64.b64encode(raw).decode(), format="text", encoding="base64")
    fmt, data, note = recognise(text)
    return DecodedValue(value=text, format=fmt, encoding="utf-8", data=data, note=note)


def recognise(text: str) -> tuple[ValueFormat, Any, str | None]:
    """The format of a stored value, its data, and why a value that parses is shown as text only
    (over a limit, or unrepresentable in JSON); such a value reads as text."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            data = load_json(text)
        except UnrepresentableValueError as exc:  # it is JSON: not to be read as YAML instead
            return "text", None, f"shown as text only: {exc}"
        except InvalidValueError:
            pass
        else:
            if isinstance(data, dict | list):
                return "json", data, None
    if "\n" in stripped or ": " in stripped or stripped.startswith("- "):
        try:
            data = load_yaml(text)
        except UnrepresentableValueError as exc:
            return "text", None, f"shown as text only: {exc}"
        except InvalidValueError:
            return "text", None, None
        if isinstance(data, dict | list):
            return "yaml", data, None
    return "text", None, None


def utf8(text: str, what: str) -> bytes:
    """``text`` as UTF-8; InvalidArgumentError for a lone surrogate (from a JSON escape such as \\ud800)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end].encode("unicode_escape").decode()
        raise InvalidArgumentError(
            f"{what} contains {bad} at position {exc.start}, a lone UTF-16 surrogate that UTF-8 (and so etcd) "
            "cannot store. Nothing was written."
        ) from None
