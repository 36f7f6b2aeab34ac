"""Every tool's input and output schema is a valid JSON Schema in which every property has a type.

Strict validators (and clients that generate code from schemas) flag a property with no ``type`` and no
union; pydantic writes such a property for a field annotated ``Any``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from mcp_helpers import served

from kk_etcd_mcp.etcd.embedded import free_port

pytestmark = pytest.mark.anyio

_TYPED = ("type", "anyOf", "oneOf", "allOf", "$ref", "enum", "const")


def untyped_properties(schema: Any, path: str = "") -> Iterator[str]:
    """The paths of properties (at any depth, in $defs too) that say nothing about their type."""
    if isinstance(schema, dict):
        for name, prop in (schema.get("properties") or {}).items():
            if isinstance(prop, dict) and not any(word in prop for word in _TYPED):
                yield f"{path}.{name}"
        for word, sub in schema.items():
            yield from untyped_properties(sub, f"{path}/{word}")
    elif isinstance(schema, list):
        for index, sub in enumerate(schema):
            yield from untyped_properties(sub, f"{path}[{index}]")


def test_the_check_itself_finds_an_untyped_property() -> None:
    schema = {"type": "object", "properties": {"data": {"description": "anything"}, "n": {"type": "integer"}}}
    assert list(untyped_properties(schema)) == [".data"]
    nested = {"$defs": {"Item": {"properties": {"x": {"title": "X"}}}}}
    assert list(untyped_properties(nested)) == ["/$defs/Item.x"]


async def test_every_tool_schema_is_strict_and_typed() -> None:
    # Listing tools touches no etcd: nothing needs to answer at the endpoint.
    async with served(f"http://127.0.0.1:{free_port()}", hub="false") as client:
        tools = (await client.list_tools()).tools
    assert len(tools) > 30
    problems = []
    for tool in tools:
        for kind, schema in (("input", tool.input_schema), ("output", tool.output_schema)):
            assert schema is not None, f"{tool.name} has no {kind} schema"
            Draft202012Validator.check_schema(schema)
            problems += [f"{tool.name} {kind}{path}" for path in untyped_properties(schema)]
    assert problems == []
