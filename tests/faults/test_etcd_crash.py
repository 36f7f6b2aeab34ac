"""Faults 1 and 6: etcd SIGKILLed and restarted on the same data dir.

1. Tool calls in flight through one MCP session: during the outage they end within the request timeout
   with ``etcd unavailable ...``; afterwards they succeed; the session never dies; nothing acknowledged
   before the crash is missing after it.
6. A service registered with the SDK while etcd is down longer than its lease TTL: it registers again by
   itself, and ``service_alive`` shows it again within one check interval of etcd being back.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from health_servers import HttpHealthServer
from mcp import Client
from mcp_helpers import call, error_text, served
from polling import eventually
from recovery import Stopwatch

from kk_etcd_mcp import ServiceRegistry
from kk_etcd_mcp.etcd import EtcdClient, prefix_end
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REQUEST_TIMEOUT = 1.5
# A call may take the request timeout a few times over (connect, authenticate, the RPC itself); this is
# a hang guard, far above what the calls take, and the measured durations are reported.
CALL_GUARD = 4 * REQUEST_TIMEOUT + 5


async def _calls_until(client: Client, stop: anyio.Event, outcomes: list[tuple[float, float, bool, str]]) -> None:
    """Alternate kv_put / kv_get until ``stop``; record (started, took, ok, error) of each call."""
    i = 0
    while not stop.is_set():
        i += 1
        started = time.monotonic()
        with anyio.fail_after(CALL_GUARD):
            if i % 2:
                result = await client.call_tool("kv_put", {"key": f"app/inflight/{i}", "value": str(i)})
            else:
                result = await client.call_tool("kv_get", {"key": "app/before/0"})
        outcomes.append((started, time.monotonic() - started, not result.is_error, error_text(result)))


async def test_etcd_killed_and_restarted_while_calls_are_in_flight(own_etcd: EmbeddedEtcd, recovery: Any) -> None:
    async with served(own_etcd.client_url, request_timeout=str(REQUEST_TIMEOUT), hub="false") as client:
        for i in range(20):
            await call(client, "kv_put", key=f"app/before/{i}", value=f"v{i}")

        outcomes: list[tuple[float, float, bool, str]] = []
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            for _ in range(4):  # several calls in flight at the moment of the crash
                tg.start_soon(_calls_until, client, stop, outcomes)
            await anyio.sleep(0.5)
            own_etcd.kill()
            killed_at = time.monotonic()
            await anyio.sleep(3 * REQUEST_TIMEOUT)
            restarting_at = time.monotonic()
            await anyio.to_thread.run_sync(own_etcd.start)
            back_at = time.monotonic()
            first_ok = await eventually(
                lambda: next((o for o in outcomes if o[0] >= back_at and o[2]), None), "a call succeeds after"
            )
            stop.set()

        during = [o for o in outcomes if killed_at <= o[0] and o[0] + o[1] < restarting_at]
        assert during, "no call ran during the outage"
        assert all(not ok for _, _, ok, _ in during)
        assert all(f"etcd unavailable at {own_etcd.client_url}: " in text for *_, text in during), during
        assert "Traceback" not in " ".join(text for *_, text in outcomes)
        recovery("longest tool call while etcd was down", max(took for _, took, _, _ in during))
        recovery("etcd back → first successful tool call", first_ok[0] + first_ok[1] - back_at)

        # The same session goes on; every write acknowledged before the crash is there.
        assert (await client.list_tools()).tools  # (ping is gone from the protocol version mcp 2.x speaks)
        listed = await call(client, "kv_list", prefix="app/before/")
        found = {item["key"]: item["value"] for item in listed["items"]}
        assert found == {f"app/before/{i}": f"v{i}" for i in range(20)}
        acked = [o for o in outcomes if o[2]]
        assert acked, "no call succeeded at all"


async def test_sdk_registration_comes_back_after_its_lease_expired_in_an_outage(
    own_etcd: EmbeddedEtcd, recovery: Any
) -> None:
    ttl = 2
    interval = 1
    root = "kk_service/"
    async with (
        HttpHealthServer() as target,
        served(own_etcd.client_url, request_timeout=str(REQUEST_TIMEOUT), hub_lease_ttl="3") as client,
        ServiceRegistry([own_etcd.client_url], prefix=root, request_timeout=REQUEST_TIMEOUT) as registry,
        registry.register("web", target.addr, "http", check={"timeout": 1, "interval": interval}, ttl=ttl) as kept,
    ):

        async def alive() -> list[dict[str, Any]]:
            result = await client.call_tool("service_alive", {"name": "web"})
            return (result.structured_content or {}).get("instances", []) if not result.is_error else []

        await eventually(alive, "the instance is alive before the outage")
        first_lease = kept.lease_id

        own_etcd.kill()
        await eventually(lambda: kept.lost.is_set(), "the SDK notices its lease is gone", within=ttl + 10)
        await anyio.sleep(1)
        await anyio.to_thread.run_sync(own_etcd.start)
        clock = Stopwatch()

        await eventually(lambda: kept.lease_id != first_lease, "the SDK registers again under a new lease")
        registered_again = clock.elapsed()
        await eventually(alive, "service_alive shows the instance again")
        recovery("etcd back → SDK registered again", registered_again)
        recovery("etcd back → service_alive lists it", clock.elapsed())

        async with EtcdClient([own_etcd.client_url]) as etcd:
            prefix = f"{root}registration/"
            kvs = (await etcd.range(prefix, prefix_end(prefix))).kvs
            assert [kv.key.decode() for kv in kvs] == [f"{root}registration/Http/web/{target.addr}"]
            assert kvs[0].lease == kept.lease_id
