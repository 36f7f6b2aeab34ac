"""Limits, end to end: a value over max_value_bytes, and calls over max_concurrent_calls.

Over a limit a call fails at once with an error that names the limit and its setting, and nothing is
written (an import: nothing at all).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from conftest import EtcdCtl
from health_servers import RawTcpServer
from mcp_helpers import call, call_error, error_text, served
from polling import eventually

pytestmark = pytest.mark.anyio


def snapshot(etcdctl: EtcdCtl, prefix: str) -> Any:
    return json.loads(etcdctl("get", prefix, "--prefix", "-w", "json").stdout).get("kvs")


async def test_a_value_over_max_value_bytes_is_refused_and_nothing_is_written(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    p = key_prefix
    etcdctl("put", f"{p}cfg/a", "old")
    before = snapshot(etcdctl, p)
    async with served(etcd_endpoint, hub="false", max_value_bytes="1000") as client:
        text = await call_error(client, "kv_put", key=f"{p}big", value="x" * 1001)
        assert f"the value for {p}big is 1,001 bytes, over the limit of 1,000 bytes (setting max_value_bytes)" in text
        assert "Nothing was written" in text
        assert snapshot(etcdctl, p) == before

        # An import is all or nothing: one item too large stops every other item too.
        items = [{"key": f"{p}cfg/a", "value": "new"}, {"key": f"{p}cfg/b", "value": "é" * 501}]
        document = {"format": "kk-etcd-export/v1", "prefix": f"{p}cfg/", "revision": 1, "items": items}
        text = await call_error(client, "kv_import", document=document, dry_run=False)
        assert f"the value for {p}cfg/b is 1,002 bytes, over the limit of 1,000 bytes" in text
        assert snapshot(etcdctl, p) == before

        # At the limit is fine.
        await call(client, "kv_put", key=f"{p}big", value="x" * 1000)
        assert len(etcdctl("get", f"{p}big", "--print-value-only").stdout.rstrip("\n")) == 1000


async def test_a_call_over_max_concurrent_calls_is_refused_at_once(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    """A live HTTP check of a server that accepts and never answers holds the one slot until its timeout."""
    p = key_prefix
    settings = {"hub": "false", "max_concurrent_calls": "1", "registry_prefix": f"{p}reg/"}
    async with RawTcpServer("silent") as silent, served(etcd_endpoint, **settings) as client:
        check = {"addr": silent.url, "timeout": "5s", "interval": "10s"}
        await call(client, "service_register", name="slow", addr=silent.addr, type="http", check=check)
        slow_result: list[str] = []

        async def slow_call() -> None:
            result = await client.call_tool("service_check", {"name": "slow", "addr": silent.addr})
            slow_result.append(json.dumps(result.structured_content) if not result.is_error else error_text(result))

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_call)

            await eventually(lambda: silent.accepted, "the live check connects to the silent server")
            text = await call_error(client, "kv_get", key=f"{p}x")
            assert "busy: 1 calls are running (max_concurrent_calls = 1); try again in a moment" in text
            text = await call_error(client, "kv_put", key=f"{p}x", value="1")
            assert "busy" in text and "Nothing was done" in text
            assert etcdctl("get", f"{p}x").stdout == ""  # refused: nothing written
        assert slow_result and "critical" in slow_result[0]  # the slow call itself finished normally
        await call(client, "kv_put", key=f"{p}x", value="1")  # the slot is free again
