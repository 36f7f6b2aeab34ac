"""Input a model or a person actually sends, and values other tools stored, through the real server.

Whatever is in etcd reads back (as text when it has no JSON form, saying why); what cannot be read
back is not written; numbers out of range, names and hosts outside the rules, and wrong argument types
get one sentence each; JSON scalars are values; every mutating call leaves exactly one audit line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import EtcdCtl
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_helpers import call, call_error, error_text, served, server_env
from mcp_types import TextResourceContents
from registry_helpers import register, registry_keys, running_hub, wait_status

from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.registry import InstanceKey
from kk_etcd_mcp.registry.store import RegistryStore

pytestmark = pytest.mark.anyio

LONG_INT = "1" * 5000  # over Python's 4,300-digit limit for int <-> str
INT64_MAX = 2**63 - 1

# Stored by another tool: each must read back. (key suffix, stored text, format it reads as, why text)
STORED: list[tuple[str, str, str, str | None]] = [
    ("long.json", '{"n": ' + LONG_INT + "}", "text", "integer longer than"),
    ("long.yaml", f"n: {LONG_INT}\nm: 2\n", "text", "integer longer than"),
    ("binary.yaml", "data: !!binary aGVsbG8=\nx: 1\n", "text", "binary data (!!binary)"),
    ("set.yaml", "tags: !!set {a: null}\nx: 1\n", "text", "a set (!!set)"),
    ("inf.yaml", "x: .inf\ny: 1\n", "text", "inf"),
    ("tag.yaml", "a: !Ref b\nc: 1\n", "text", "the safe loader refuses"),
    ("surrogate.json", '{"a": "\\ud800"}', "text", "lone UTF-16 surrogate"),
    ("nan.json", '{"a": NaN}', "text", "nan"),
    ("dates.yaml", "when: 2024-01-02\n200: ok\ntrue: yes\n", "yaml", None),
]


def value_of(etcdctl: EtcdCtl, key: str) -> str | None:
    found = json.loads(etcdctl("get", key, "-w", "json").stdout).get("kvs") or []
    return base64.b64decode(found[0]["value"]).decode() if found else None


def kvs(etcdctl: EtcdCtl, prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(etcdctl("get", prefix, "--prefix", "-w", "json").stdout).get("kvs") or []
    return found


def one_sentence_error(text: str) -> None:
    """A refusal a model can act on: one line, its reason, no pydantic report."""
    assert "\n" not in text and "errors.pydantic.dev" not in text and "validation error for" not in text, text
    assert not text.rstrip(".").endswith(("Error executing tool", "Error executing tool kv_get")), text


# What is stored reads back -----------------------------------------------------------------------------


async def test_whatever_is_stored_reads_back(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    p = key_prefix
    for suffix, text, _, _ in STORED:
        etcdctl("put", f"{p}{suffix}", text)
    async with served(etcd_endpoint, hub="false") as client:
        for suffix, text, fmt, why in STORED:
            entry = await call(client, "kv_get", key=f"{p}{suffix}")
            assert (entry["value"], entry["format"]) == (text, fmt), suffix
            if why is None:
                assert entry["note"] is None
            else:
                assert entry["data"] is None and why in entry["note"] and "shown as text only" in entry["note"]
            read = await client.read_resource(f"etcd://kv/{p}{suffix}")
            [contents] = read.contents
            assert isinstance(contents, TextResourceContents) and contents.text == text, suffix
        dates = await call(client, "kv_get", key=f"{p}dates.yaml")
        assert dates["data"] == {"when": "2024-01-02", "200": "ok", "true": True}  # YAML 1.1: yes is true
        exported = await call(client, "kv_export", prefix=p)
        assert {item["key"]: item["value"] for item in exported["items"]} == {f"{p}{s}": t for s, t, _, _ in STORED}


async def test_what_would_not_read_back_is_not_written(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    p = key_prefix
    async with served(etcd_endpoint, hub="false") as client:
        for suffix, text, _, why in STORED:
            if why is None:
                continue
            as_format = "json" if suffix.endswith(".json") else "yaml"
            refused = await call_error(client, "kv_put", key=f"{p}{suffix}", value=text, format=as_format)
            assert why in refused and "Nothing was written" in refused, (suffix, refused)
            one_sentence_error(refused)
            assert value_of(etcdctl, f"{p}{suffix}") is None
            # As text it reads back (as text), so it is written.
            await call(client, "kv_put", key=f"{p}{suffix}", value=text)
            assert value_of(etcdctl, f"{p}{suffix}") == text
        # a document whose item holds a lone surrogate (a JSON escape in a string document)
        item = '{"key": "' + p + 'x", "value": "\\ud800"}'
        document = '{"format": "kk-etcd-export/v1", "prefix": "' + p + '", "revision": 1, "items": [' + item + "]}"
        refused = await call_error(client, "kv_import", document=document)
        assert "lone UTF-16 surrogate" in refused and "Nothing was written" in refused
        assert value_of(etcdctl, f"{p}x") is None


async def test_rollback_respects_max_value_bytes(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    key = f"{key_prefix}big"
    etcdctl("put", key, "x" * 2000)
    etcdctl("put", key, "small")
    async with served(etcd_endpoint, hub="false", max_value_bytes="1000") as client:
        history = await call(client, "kv_history", key=key)
        oldest = history["versions"][-1]["mod_revision"]
        text = await call_error(client, "kv_rollback", key=key, to_revision=oldest)
        assert f"the value for {key} is 2,000 bytes, over the limit of 1,000 bytes (setting max_value_bytes)" in text
        planned = await call_error(client, "kv_rollback", key=key, to_revision=oldest, dry_run=True)
        assert "over the limit" in planned
    assert value_of(etcdctl, key) == "small"


# JSON scalars are values -------------------------------------------------------------------------------


async def test_json_scalars_are_stored_as_their_json_text(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    p = key_prefix
    async with served(etcd_endpoint, hub="false") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        schema = tools["kv_put"].input_schema["properties"]["value"]
        assert {"type": "number"} in schema["anyOf"] and {"type": "boolean"} in schema["anyOf"]
        assert "a number or true/false as its JSON text" in schema["description"]
        for value, text in [(1, "1"), (True, "true"), (False, "false"), (2.5, "2.5"), (-7, "-7")]:
            await call(client, "kv_put", key=f"{p}s", value=value)
            assert value_of(etcdctl, f"{p}s") == text, value
            await call(client, "kv_put", key=f"{p}j", value=value, format="json")
            assert value_of(etcdctl, f"{p}j") == text, value
        assert (await call(client, "kv_get", key=f"{p}s"))["value"] == "-7"
        refused = await call_error(client, "kv_put", key=f"{p}n", value=None)
        assert "`value` must be a string, an object, a list, a number or a boolean (true or false)" in refused
        one_sentence_error(refused)


# Numbers out of range, wrong types: one sentence per argument -----------------------------------------


async def test_out_of_range_numbers_and_wrong_types_get_one_sentence_each(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    p = key_prefix
    etcdctl("put", f"{p}a", "1")
    before = kvs(etcdctl, p)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("kv_get", {"key": f"{p}a", "revision": 2**63}, f"`revision` must be at most {INT64_MAX}, got {2**63}"),
        ("kv_get", {"key": f"{p}a", "revision": -1}, "`revision` must be at least 0, got -1"),
        ("kv_put", {"key": f"{p}a", "value": "v", "lease_ttl": 2**64}, "`lease_ttl` must be at most 9000000000"),
        ("kv_put", {"key": f"{p}a", "value": "v", "expected_revision": -1}, "`expected_revision` must be at least 0"),
        ("kv_delete", {"key": f"{p}a", "expected_revision": 2**63}, f"`expected_revision` must be at most {INT64_MAX}"),
        ("kv_rollback", {"key": f"{p}a", "to_revision": 2**70}, "`to_revision` must be at most"),
        ("kv_history", {"key": f"{p}a", "limit": 2**80}, "`limit` must be at most 100"),
        ("kv_list", {"prefix": p, "limit": "many"}, "`limit` must be an integer from 1 to 1000 (got a string)"),
        ("kv_get", {"key": 5}, "`key` must be a string (got a number)"),
        ("kv_put", {"value": "v"}, "`key` is required (etcd key, e.g. 'app/db/url')"),
        ("kv_put", {"key": f"{p}a", "value": "v", "format": "toml"}, "`format` must be 'text', 'json' or 'yaml'"),
        ("service_register", {"name": "web", "addr": "127.0.0.1:1", "ttl": 2**63}, "`ttl` must be at most"),
        ("service_register", {"name": "web", "addr": "127.0.0.1:1", "weight": 10**30}, "`weight` must be at most"),
        (
            "service_register",
            {"name": "web", "addr": "127.0.0.1:1", "check": {"failures_before_critical": 10**20, "bogus": 1}},
            "`check.failures_before_critical` must be at most 1000",
        ),
        ("audit_log", {"limit": 2**64}, "`limit` must be at most 1000"),
        ("kv_import", {"document": 5}, "`document` must be an object or a string (got a number)"),
    ]
    async with served(etcd_endpoint, hub="false", registry_prefix=f"{p}reg/") as client:
        for tool, arguments, expected in cases:
            text = error_text(await client.call_tool(tool, arguments))
            assert expected in text, (tool, arguments, text)
            one_sentence_error(text)
        both = error_text(
            await client.call_tool(
                "service_register", {"name": "web", "addr": "127.0.0.1:1", "check": {"timeout": "soon", "bogus": 1}}
            )
        )
        assert "`check.timeout`: not a duration: 'soon'" in both and "`check.bogus` is not a known field" in both
    assert kvs(etcdctl, p) == before


# Every mutating call: one audit line, whatever fails ------------------------------------------------


async def test_every_mutating_call_writes_exactly_one_audit_line(
    etcd_endpoint: str, key_prefix: str, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    calls: list[tuple[str, dict[str, Any]]] = []
    async with served(etcd_endpoint, hub="false", audit_file=str(audit), registry_prefix=f"{key_prefix}reg/") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        mutating = sorted(n for n, t in tools.items() if t.annotations and not t.annotations.read_only_hint)
        assert len(mutating) >= 17
        for name in mutating:
            if tools[name].input_schema.get("required"):
                calls.append((name, {}))  # required arguments missing
            calls.append((name, {"dry_run": "perhaps"}))  # a wrong type
        calls.append(("kv_delete", {"key": f"{key_prefix}a", "expected_revision": 2**63}))  # its preview's range
        calls.append(("kv_put", {"key": f"{key_prefix}a", "value": "1"}))  # ok
        for name, arguments in calls:
            await client.call_tool(name, arguments)
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    # kv values are logged as their size and hash (audit_values is off)
    calls[-1] = (
        "kv_put",
        {"key": f"{key_prefix}a", "value": {"bytes": 1, "sha256": hashlib.sha256(b"1").hexdigest()[:16]}},
    )
    assert [(e["tool"], e["arguments"]) for e in lines] == calls
    refused = [e for e in lines[:-1] if e["outcome"] != "error" or "invalid arguments" not in e["error"]]
    assert refused == [], refused
    assert lines[-1]["outcome"] == "ok"


# Names and addresses ---------------------------------------------------------------------------------


async def test_service_names_and_hosts_follow_the_rules(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    root = f"{key_prefix}reg/"
    refused: list[tuple[dict[str, str], str]] = [
        ({"name": "a\x00b"}, "service name 'a\\x00b' is not allowed"),
        ({"name": "a\x07b"}, "service name 'a\\x07b' is not allowed"),
        ({"name": "\u043erders"}, "is not allowed: use 1-128 characters of A-Z, a-z, 0-9"),  # Cyrillic o
        ({"name": "s" * 5000}, "(5000 characters) is not allowed"),
        ({"name": "-web"}, "starting with a letter or digit"),
        ({"addr": "h" * 5000 + ":80"}, "is longer than 253 characters"),
        ({"addr": "a" * 64 + ".example:80"}, "is not a DNS name"),
        ({"addr": "999.1.1.1:80"}, "host '999.1.1.1' is not a valid IPv4 address"),
        ({"addr": "[::g]:80"}, "host '[::g]' is not a valid IPv6 address"),
        ({"addr": "bad-.example:80"}, "is not a DNS name"),
        ({"addr": "ex\u0430mple.com:80"}, "is not a DNS name"),  # Cyrillic a
        ({"addr": "host:0"}, "with a port from 1 to 65535"),
    ]
    accepted = [
        {"name": "orders"},
        {"name": "test_grpc_8843"},
        {"name": "a.b-c_D9", "addr": "svc_1.ns-2.example:8080"},
        {"addr": "[::1]:8080"},
        {"addr": "10.0.0.5:65535"},
    ]
    async with served(etcd_endpoint, hub="false", registry_prefix=root) as client:
        for change, expected in refused:
            arguments = {"name": "web", "addr": "127.0.0.1:80", "type": "tcp"} | change
            text = await call_error(client, "service_register", **arguments)
            assert expected in text, (change, text)
            one_sentence_error(text)
        http_check = {"name": "web", "addr": "127.0.0.1:80", "check": {"addr": "http://" + "h" * 300 + "/x"}}
        assert "is longer than 253 characters" in await call_error(client, "service_register", **http_check)
        assert etcdctl("get", root, "--prefix", "--keys-only").stdout.strip() == ""
        for change in accepted:
            await call(client, "service_register", **({"name": "web", "addr": "127.0.0.1:80", "type": "tcp"} | change))


async def test_stored_registrations_that_break_the_rules_are_reported_not_checked(
    etcd_endpoint: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Written by another tool or an older version: listed as invalid; the hub never probes them."""
    keys = registry_keys(key_prefix)
    host = "h" * 5000
    bad = [InstanceKey("tcp", "web", f"{host}:80"), InstanceKey("tcp", "a\x01b", "127.0.0.1:80")]
    document = {"ServiceType": "Tcp", "CheckConfig": {"Type": "Tcp", "Timeout": "1s", "Interval": "1s"}}
    async with EtcdClient([etcd_endpoint]) as etcd:
        for key in bad:
            document["CheckConfig"]["Addr"] = key.addr  # type: ignore[index]
            await etcd.put(keys.registration(key), json.dumps(document))
        etcd_port = etcd_endpoint.rsplit(":", 1)[1]
        good = await register(etcd, keys, "web", f"127.0.0.1:{etcd_port}", "tcp")  # etcd's own port answers
        async with running_hub(etcd, keys):
            await wait_status(etcd, keys, good, "passing")
            for key in bad:
                status = await wait_status(etcd, keys, key, "critical")
                assert status.output.startswith("registration is invalid: "), status.output
            listed = {(i.name, i.addr): i for i in await RegistryStore(etcd, keys).instances()}
            assert listed[("web", f"{host}:80")].check is None
            assert "is longer than 253 characters" in listed[("web", f"{host}:80")].output
            assert "service name 'a\\x01b' is not allowed" in listed[("a\x01b", "127.0.0.1:80")].output
    assert not [r for r in caplog.records if r.exc_info], "the hub logged a traceback"


# The command line: serve's flags without `serve` -----------------------------------------------------


def test_a_command_line_without_a_command_serves() -> None:
    from kk_etcd_mcp.cli import with_command

    assert with_command(["--embedded-etcd"]) == ["serve", "--embedded-etcd"]
    assert with_command([]) == ["serve"]
    assert with_command(["hub", "--log-level", "DEBUG"]) == ["hub", "--log-level", "DEBUG"]
    assert with_command(["--version"]) == ["--version"]


async def test_serve_flags_work_without_the_serve_command(etcd_endpoint: str) -> None:
    env = server_env(etcd_endpoint, hub="false")
    params = StdioServerParameters(command=sys.executable, args=["-m", "kk_etcd_mcp", "--read-only"], env=env)
    async with Client(params) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert "kv_get" in tools and "kv_put" not in tools  # --read-only took effect
    help_text = subprocess.run(
        [sys.executable, "-m", "kk_etcd_mcp", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "Without a command it serves" in help_text


async def test_the_hub_status_of_an_invalid_name_stays_readable(etcd_endpoint: str, key_prefix: str) -> None:
    """service_list and the kk://services resource list a stored bad registration instead of failing."""
    root = f"{key_prefix}reg/"
    async with EtcdClient([etcd_endpoint]) as etcd:
        await etcd.put(f"{root}registration/Http/a\x00b/127.0.0.1:80", '{"ServiceType":"Http"}')
    async with served(etcd_endpoint, hub="false", registry_prefix=root) as client:
        listed = await call(client, "service_list")
        [instance] = listed["instances"]
        assert instance["status"] == "critical" and instance["output"].startswith("registration is invalid")
        services = await client.read_resource("kk://services")
        assert "registration is invalid" in services.contents[0].text  # type: ignore[union-attr]
