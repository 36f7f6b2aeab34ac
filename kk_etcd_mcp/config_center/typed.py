"""A stored configuration value as an application reads it: parsed by its format, validated into a model.

The formats are the configuration center's own (``formats.py``): with ``format=None`` a value is read
the way ``kv_get`` recognises it (a JSON object/array or a YAML mapping/sequence is parsed, anything
else is text); a named format must parse as that format. With a ``model`` (a pydantic model class) the
value must be a JSON or YAML object that validates into it. Every failure is an ``InvalidConfigError``
naming the key, the revision and what is wrong (the line and column, or the fields).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import InvalidConfigError, InvalidValueError
from .formats import ValueFormat, load_json, load_yaml, recognise

MAX_FIELDS_NAMED = 3  # in an error message; the rest are counted


def parse_config(key: str, revision: int, raw: bytes, fmt: ValueFormat | None, model: type[BaseModel] | None) -> Any:
    """``raw`` (the bytes of ``key`` at ``revision``) as the application wants it; InvalidConfigError otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidConfigError(key, revision, "the value is not UTF-8 text") from None
    try:
        data = _parsed(text, fmt, structured=model is not None)
    except InvalidValueError as exc:
        raise InvalidConfigError(key, revision, str(exc).rstrip(".")) from None
    if model is None:
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidConfigError(key, revision, f"it does not fit {model.__name__}: {fields_reason(exc)}") from None


def _parsed(text: str, fmt: ValueFormat | None, *, structured: bool) -> Any:
    if fmt == "json":
        return load_json(text)
    if fmt == "yaml":
        return load_yaml(text)
    if fmt == "text":
        if structured:
            raise InvalidValueError("a model needs a json or yaml value, and format text was asked for")
        return text
    found, data, note = recognise(text)
    if found != "text":
        return data
    if note:  # it parses, over a limit or into what JSON cannot carry
        raise InvalidValueError(note.removeprefix("shown as text only: "))
    if not structured:
        return text
    # A model needs an object: say why this text is not one, in the words of the format it looks like.
    if text.lstrip()[:1] in ("{", "["):
        load_json(text)  # raises with the line and column
    parsed = load_yaml(text)  # raises with the line and column when it does not parse
    raise InvalidValueError(f"the value is a single {type(parsed).__name__} (text), not a json or yaml object")


def fields_reason(exc: ValidationError) -> str:
    """``field a.b: message; field c: message`` for the first few problems pydantic found."""
    problems = []
    for error in exc.errors()[:MAX_FIELDS_NAMED]:
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"field {where}: {message}" if where else message)
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
