"""Fuzzing: hypothesis drives every tool of one real server session with random and malformed arguments.

Arguments follow each tool's own input schema some of the time and break it the rest: wrong types,
huge strings, unicode, NUL bytes, ``../``, deep JSON, YAML alias bombs, unknown and missing fields,
integers past 64 bits, JSON scalars as values, YAML tags and over-long numbers in values, service names
with control characters or look-alike letters, hosts of thousands of characters.
Whatever comes in, the server must answer (no crash: it still lists its tools afterwards), never with a
traceback, a bare "Error executing tool" or pydantic's own report, and never write a key outside the
allowed prefixes (etcd is compared before and after). Every mutating call leaves exactly one audit
line, and afterwards whatever the calls stored reads back, and the registry still lists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from etcd_under_test import make_etcd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp_helpers import error_text, served

from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_ports
from kk_etcd_mcp.mcp_server.identity import STDIO, acting_as

ALLOWED = "fuzz/"
REGISTRY = "fuzz-registry/"
EXAMPLES = int(os.environ.get("KK_FUZZ_EXAMPLES", "400"))  # more for a longer hunt

BILLION_LAUGHS = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
    for i in range(9)
)
NASTY_STRINGS = [
    "",
    " ",
    "/",
    "../",
    "../../etc/passwd",
    f"{ALLOWED}../outside",
    f"{ALLOWED}\x00x",
    "\x00",
    "kk_service/hub/leader",
    "a/b",
    "root",
    "🙂" * 50,
    "\ud7ff\ue000",
    "{}",
    "[" * 5000 + "]" * 5000,
    '{"a":' * 3000 + "1" + "}" * 3000,
    BILLION_LAUGHS,
    "*a",
    "%s%n",
    "x" * 200_000,
    # values that parse but have no JSON form, or are ordinary scalars
    "data: !!binary aGVsbG8=\nx: 1",
    "tags: !!set {a: null}\nx: 1",
    "n: " + "1" * 5000 + "\nm: 2",
    '{"n": ' + "1" * 5000 + "}",
    '{"a": "\\ud800"}',
    "x: .nan\ny: 1",
    "when: 2024-01-02\n200: ok",
]
NAMES = [  # service names and hosts outside the rules (and a few inside)
    "orders",
    "a\x00b",
    "a\x07b",
    "\u043erders",  # Cyrillic o
    "s" * 5000,
    "h" * 5000 + ":80",
    "127.0.0.1:80",
    "[::1]:8080",
    "999.1.1.1:80",
    "ex\u0430mple.com:80",
    "a" * 64 + ".example:80",
    "svc_1.ns-2:8080",
]
HUGE = st.one_of(st.integers(min_value=2**63 - 2, max_value=2**200), st.integers(min_value=-(2**200), max_value=-1))
GARBAGE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    HUGE,
    st.sampled_from(NAMES),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NASTY_STRINGS),
    st.text(max_size=200),
    st.lists(st.text(max_size=10), max_size=5),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
)


def _value(schema: dict[str, Any], name: str) -> st.SearchStrategy[Any]:
    """Something of the property's declared type (often), or garbage (sometimes)."""
    kinds = [s.get("type") for s in schema.get("anyOf", [schema])]
    typed: list[st.SearchStrategy[Any]] = []
    for kind in kinds:
        if kind == "string":
            if "enum" in schema:
                typed.append(st.sampled_from(schema["enum"]))
            elif name in ("name", "addr", "role"):
                typed.append(st.sampled_from(NAMES))
            elif "key" in name or "prefix" in name:
                typed.append(
                    st.sampled_from([ALLOWED, f"{REGISTRY}"]).flatmap(lambda p: st.text(max_size=30).map(p.__add__))
                )
            typed.append(st.text(max_size=60))
        elif kind == "integer":
            typed.append(st.integers(min_value=-5, max_value=10**6))
            typed.append(HUGE)
        elif kind == "number":
            typed.append(st.floats(min_value=-1, max_value=1e6))
            typed.append(st.integers(min_value=-(10**6), max_value=10**6))  # a JSON number that is an integer
        elif kind == "boolean":
            typed.append(st.booleans())
        elif kind == "array":
            typed.append(st.lists(st.text(max_size=20), max_size=4))
        elif kind == "object":
            typed.append(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3))
        elif kind == "null":
            typed.append(st.none())
    return st.one_of(*typed, GARBAGE) if typed else GARBAGE


def arguments(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The required properties (mostly) and any of the optional ones, plus now and then an unknown one."""
    properties: dict[str, Any] = schema.get("properties", {})
    required = [name for name in schema.get("required", []) if name in properties]
    optional = sorted(set(properties) - set(required))
    keep_required = st.booleans().map(lambda drop: [] if drop else required) if required else st.just([])
    picked_optional = st.lists(st.sampled_from(optional), unique=True) if optional else st.just([])
    extra = st.dictionaries(st.sampled_from(["__proto__", "../x", "unknown", "\x00"]), GARBAGE, max_size=1)
    names = st.tuples(
        st.one_of(st.just(required), st.just(required), st.just(required), keep_required), picked_optional
    ).map(lambda parts: [*parts[0], *parts[1]])
    return st.tuples(names, st.one_of(st.just({}), st.just({}), extra)).flatmap(
        lambda picked: st.fixed_dictionaries({name: _value(properties[name], name) for name in picked[0]}).map(
            lambda args: {**picked[1], **args}
        )
    )


@dataclass
class FuzzTarget:
    portal: anyio.from_thread.BlockingPortal
    client: Client
    tools: dict[str, dict[str, Any]]
    mutating: set[str]
    audit: Path

    def call(self, tool: str, args: dict[str, Any]) -> Any:
        # A hang guard: a live check (service_check, service_pick) waits at most 60 s.
        return self.portal.start_task_soon(_as_stdio, self.client.call_tool, tool, args).result(timeout=150)


async def _as_stdio(call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``call`` as the stdio user. mcp's in-memory streams carry the caller's context to the server with
    each message, and a portal task does not start in the context ``served`` set up."""
    with acting_as(STDIO):
        return await call(*args)


async def _snapshot(endpoint: str) -> dict[bytes, bytes]:
    async with EtcdClient([endpoint]) as etcd:
        return {kv.key: kv.value for kv in (await etcd.range(b"\x00", b"\x00")).kvs}


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FuzzTarget, EmbeddedEtcd]]:
    base = tmp_path_factory.mktemp("fuzz")
    with (
        make_etcd(base / "data", *free_ports(2), log_file=base / "etcd.log") as etcd,
        anyio.from_thread.start_blocking_portal() as portal,
        ExitStack() as stack,
    ):
        portal.call(_seed, etcd.client_url)
        server = served(
            etcd.client_url,
            allowed_prefixes=ALLOWED,
            registry_prefix=REGISTRY,
            hub="false",
            backup_dir=str(base / "backups"),  # cluster_snapshot writes only there
            audit_file=str(base / "audit.jsonl"),
        )
        client = stack.enter_context(portal.wrap_async_context_manager(server))
        listed = portal.call(_as_stdio, client.list_tools).tools
        tools = {t.name: t.input_schema for t in listed}
        mutating = {t.name for t in listed if t.annotations is not None and not t.annotations.read_only_hint}
        yield FuzzTarget(portal, client, tools, mutating, base / "audit.jsonl"), etcd


async def _seed(endpoint: str) -> None:
    async with EtcdClient([endpoint]) as etcd:
        await etcd.put("outside/precious", "keep me")
        await etcd.put(f"{ALLOWED}seed", "a: 1")


@pytest.mark.slow
def test_every_tool_survives_random_and_malformed_arguments(fuzz_target: tuple[FuzzTarget, EmbeddedEtcd]) -> None:
    target, etcd = fuzz_target
    before = target.portal.call(_snapshot, etcd.client_url)
    seen_errors: list[str] = []
    mutating_calls: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(data=st.data())
    def one_call(data: st.DataObject) -> None:
        tool = data.draw(st.sampled_from(sorted(target.tools)), label="tool")
        args = data.draw(arguments(target.tools[tool]), label="arguments")
        result = target.call(tool, args)
        if tool in target.mutating:
            mutating_calls.append(tool)
        text = error_text(result)
        assert "Traceback" not in text, text[:2000]
        assert 'File "' not in text, text[:2000]
        if result.is_error:
            seen_errors.append(text)
            assert text.strip() != f"Error executing tool {tool}", "an error without its reason"
            assert "errors.pydantic.dev" not in text and "validation error for" not in text, text[:2000]
        else:
            json.dumps(result.structured_content)  # a result is plain JSON

    one_call()

    audited = [json.loads(line)["tool"] for line in target.audit.read_text().splitlines()]
    assert audited == mutating_calls, "every mutating call leaves exactly one audit line"
    for key in target.portal.call(_snapshot, etcd.client_url):  # whatever the calls stored reads back
        if key.startswith(ALLOWED.encode()):
            read = target.call("kv_get", {"key": key.decode(errors="surrogateescape")})
            assert not read.is_error or "key not found" in error_text(read), error_text(read)
    listed = target.call("service_list", {})
    assert not listed.is_error, error_text(listed)

    assert target.portal.call(_as_stdio, target.client.list_tools).tools, "the server stopped answering"
    after = target.portal.call(_snapshot, etcd.client_url)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    outside = sorted(k for k in changed if not k.startswith((ALLOWED.encode(), REGISTRY.encode())))
    assert outside == [], f"writes outside the allowed prefixes: {outside[:10]}"
    assert after[b"outside/precious"] == b"keep me"
    assert seen_errors, "no argument was refused: the fuzzing did not reach the checks"
