"""Value formats of the configuration center: validating what is written, recognising what is read.

etcd stores bytes with no content type, so a read recognises the format: a JSON object or array is
``json``, a YAML mapping or sequence is ``yaml``, anything else is ``text``. Values that are not
UTF-8 are returned base64-encoded.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from ..errors import InvalidValueError

# libyaml's safe loader/dumper when PyYAML was built with it: several times faster, same semantics.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

ValueFormat = Literal["json", "yaml", "text"]
Encoding = Literal["utf-8", "base64"]


@dataclass(frozen=True, slots=True)
class DecodedValue:
    value: str
    format: ValueFormat
    encoding: Encoding
    data: Any = None


def parse_value(text: str, fmt: ValueFormat) -> Any:
    """Parse ``text`` as ``fmt``; raise InvalidValueError naming line and column when it does not parse."""
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidValueError(
                f"invalid json at line {exc.lineno}, column {exc.colno}: {exc.msg}. Nothing was written."
            ) from None
    if fmt == "yaml":
        try:
            return yaml.load(text, Loader=_YAML_LOADER)  # _YAML_LOADER is a safe loader
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = exc.problem or exc.context or "does not parse"
            raise InvalidValueError(f"invalid yaml{where}: {problem}. Nothing was written.") from None
        except yaml.YAMLError as exc:
            raise InvalidValueError(f"invalid yaml: {exc}. Nothing was written.") from None
    return text


def encode_value(value: str | dict[str, Any] | list[Any], fmt: ValueFormat) -> bytes:
    """The bytes to store: text as given (validated for json/yaml), or a structure serialised as ``fmt``."""
    if isinstance(value, str):
        parse_value(value, fmt)
        return value.encode()
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
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            pass
        else:
            if isinstance(data, dict | list):
                return "json", data
    if "\n" in stripped or ": " in stripped or stripped.startswith("- "):
        try:
            data = yaml.load(text, Loader=_YAML_LOADER)  # _YAML_LOADER is a safe loader
        except yaml.YAMLError:
            return "text", None
        if isinstance(data, dict | list):
            return "yaml", data
    return "text", None
