"""The one place where kk_etcd_mcp's errors become MCP tool errors.

mcp 2.x carries a raised ``ToolError``'s message to the client as an ``isError`` result; any other
exception reaches the model only as "Error executing tool <name>". So every tool is wrapped here.
``Refused`` marks a call stopped before it did anything (scope, busy, a change not confirmed): the
audit trail records it as "refused" rather than "error".

Arguments that do not match a tool's input schema are refused before the tool runs, with one sentence
per argument saying what it must be (``describe_invalid_arguments``), never pydantic's own multi-line
report. The sentence says what type was given, never the value (it may be a password).
"""

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from ..errors import KkEtcdError
from ..ranges import shown_number

P = ParamSpec("P")
R = TypeVar("R")


class Refused(ToolError):
    """The call was stopped before anything was done; the message says why and what to do."""


class InvalidArguments(ToolError):
    """The arguments do not match the tool's input schema; nothing was done."""


def translate_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except KkEtcdError as exc:
            raise ToolError(str(exc)) from exc

    return wrapper


# Invalid arguments -------------------------------------------------------------------------------------

_JSON_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "object": "an object",
    "array": "a list",
    "null": "null",
}
# pydantic's error types that say the value has the wrong type (the schema then says what it must be)
_TYPE_ERRORS = ("_type", "_parsing", "model_attributes_type", "union_tag_invalid")


def describe_invalid_arguments(tool: str, exc: ValidationError, schema: dict[str, Any]) -> str:
    """One sentence per argument that is wrong, e.g. "`limit` must be an integer from 1 to 1000 (got a string)"."""
    by_argument: dict[str, list[Any]] = {}
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        by_argument.setdefault(str(loc[0]) if loc else "", []).append(error)
    properties: dict[str, Any] = schema.get("properties", {})
    defs: dict[str, Any] = schema.get("$defs", {})
    sentences = [_sentence(name, errors, properties.get(name, {}), defs) for name, errors in by_argument.items()]
    return f"invalid arguments for {tool}: {' '.join(sentences)} Nothing was done."


def _sentence(name: str, errors: list[Any], schema: dict[str, Any], defs: dict[str, Any]) -> str:
    first = errors[0]
    if first["type"] == "missing" and len(first["loc"]) == 1:
        about = str(schema.get("description", "")).rstrip(".")
        return f"`{name}` is required{f' ({about})' if about else ''}."
    # A union whose every member refused the value: pydantic names each member (str, dict[str,any], ...)
    # where a field's name would be; the fields of an object member are not such names.
    fields = {f for option in schema.get("anyOf", []) for f in _resolve(option, defs).get("properties", {})}
    every_branch_failed = (
        len(errors) > 1
        and _is_union(schema)
        and all(len(e["loc"]) == 2 and e["loc"][1] not in fields and e["type"].endswith(_TYPE_ERRORS) for e in errors)
    )
    wrong_type = all(len(e["loc"]) == 1 for e in errors) and first["type"].endswith(_TYPE_ERRORS)
    if every_branch_failed or wrong_type:
        return f"`{name}` must be {_expected(schema)} (got {_json_kind(first['input'])})."
    return "; ".join(f"`{'.'.join(str(p) for p in e['loc'])}`{_predicate(e)}" for e in errors[:3]) + "."


def _predicate(error: Any) -> str:
    """What pydantic found, as the end of a sentence that starts with the field's name."""
    kind, ctx, got = error["type"], error.get("ctx") or {}, error.get("input")
    number = isinstance(got, int | float) and not isinstance(got, bool)
    suffix = f", got {shown_number(got)}" if number else ""
    if kind == "missing":
        return " is required"
    if kind in ("greater_than_equal", "greater_than"):
        return (
            f" must be {'at least' if kind.endswith('equal') else 'more than'} {ctx.get('ge', ctx.get('gt'))}{suffix}"
        )
    if kind in ("less_than_equal", "less_than"):
        return f" must be {'at most' if kind.endswith('equal') else 'less than'} {ctx.get('le', ctx.get('lt'))}{suffix}"
    if kind == "extra_forbidden":
        return " is not a known field"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind in ("literal_error", "enum") and isinstance(got, str) and len(got) <= 40:
        given = repr(got)  # one of a few words was expected: the word given is no secret
    else:
        given = _json_kind(got)
    if message.startswith("Input should be "):
        return f" must be {message.removeprefix('Input should be ')} (got {given})"
    return f": {message}"


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: dict[str, Any] = defs.get(ref.removeprefix("#/$defs/"), {})
        return resolved
    return schema


def _is_union(schema: dict[str, Any]) -> bool:
    return "anyOf" in schema or "oneOf" in schema


def _expected(schema: dict[str, Any]) -> str:
    """What the JSON schema of a property accepts, in words."""
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        kinds = [_expected(option) for option in options if option.get("type") != "null"]
        nullable = len(kinds) < len(options)
        text = ", ".join(kinds[:-1]) + f" or {kinds[-1]}" if len(kinds) > 1 else (kinds[0] if kinds else "null")
        return f"{text} (or left out)" if nullable and "default" in schema else text
    kind = schema.get("type")
    if kind is None:
        return "an object" if "$ref" in schema or "properties" in schema else "a value of the documented form"
    text = _JSON_TYPES.get(str(kind), str(kind))
    low, high = schema.get("minimum"), schema.get("maximum")
    if kind in ("integer", "number") and low is not None and high is not None:
        return f"{text} from {low} to {high}"
    if kind in ("integer", "number") and low is not None:
        return f"{text} of at least {low}"
    return text


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a value of another kind"
