"""Fault 2: etcd frozen (SIGSTOP) for longer than the request timeout, then resumed (SIGCONT).

No tool call hangs past its timeout. The hub goes on checking the services: etcd being unreachable is
not the services' fault, so nothing turns critical because of it; a real change seen during the freeze
(an instance that failed meanwhile) waits in the status writer and reaches etcd after SIGCONT.
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

from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REQUEST_TIMEOUT = 1.0
FROZEN_FOR = 4.0  # well past the request timeout, within the hub's lease TTL (10 s)
CALL_GUARD = 4 * REQUEST_TIMEOUT + 5  # a hang guard; the durations are reported
FAST = {"timeout": 1, "interval": 1}


async def instances(client: Client) -> dict[str, dict[str, Any]]:
    return {i["addr"]: i for i in (await call(client, "service_list", name="web"))["instances"]}


async def both_passing(client: Client, *targets: HttpHealthServer) -> dict[str, dict[str, Any]]:
    """Register the targets as service "web" and wait until both pass; returns the instances then."""
    for target in targets:
        await call(client, "service_register", name="web", addr=target.addr, check=FAST)

    async def passing() -> bool:
        return {i["status"] for i in (await instances(client)).values()} == {"passing"}

    await eventually(passing, "both instances pass")
    return await instances(client)


async def critical_once_etcd_answers(client: Client, failing: HttpHealthServer) -> dict[str, dict[str, Any]]:
    """Poll service_list (erring while etcd is still away) until ``failing`` shows critical."""

    async def written() -> dict[str, dict[str, Any]] | None:
        result = await client.call_tool("service_list", {"name": "web"})
        if result.is_error:
            return None
        found = {i["addr"]: i for i in (result.structured_content or {})["instances"]}
        return found if found[failing.addr]["status"] == "critical" else None

    found: dict[str, dict[str, Any]] = await eventually(written, "the instance that failed meanwhile is critical", 30)
    return found


async def test_frozen_etcd_calls_time_out_checks_go_on_and_statuses_converge(
    own_etcd: EmbeddedEtcd, recovery: Any
) -> None:
    async with (
        HttpHealthServer() as steady,
        HttpHealthServer() as failing,
        served(own_etcd.client_url, request_timeout=str(REQUEST_TIMEOUT)) as client,
    ):
        before = await both_passing(client, steady, failing)

        own_etcd.pause()
        try:
            frozen = Stopwatch()
            failing.status = 503
            checks_before = steady.requests
            durations = []
            while frozen.elapsed() < FROZEN_FOR:
                started = time.monotonic()
                with anyio.fail_after(CALL_GUARD):
                    result = await client.call_tool("kv_get", {"key": "app/x"})
                durations.append(time.monotonic() - started)
                assert result.is_error
                assert f"etcd unavailable at {own_etcd.client_url}: " in error_text(result)
            checks_during = steady.requests - checks_before
        finally:
            own_etcd.resume()
        resumed = Stopwatch()
        recovery("longest tool call while etcd was frozen", max(durations))
        # The hub checked on while etcd was frozen (interval 1 s): its checks do not wait for etcd.
        assert checks_during >= FROZEN_FOR - 2, checks_during

        after = await critical_once_etcd_answers(client, failing)
        recovery("SIGCONT → a status change seen during the freeze is in etcd", resumed.elapsed())
        # The steady one never flapped: same status, same `since`.
        assert after[steady.addr]["status"] == "passing"
        assert after[steady.addr]["since"] == before[steady.addr]["since"]
        assert (await call(client, "kv_put", key="app/x", value="1"))["revision"] > 0


async def test_frozen_past_the_hub_lease_the_hub_leads_again_and_converges(
    own_etcd: EmbeddedEtcd, recovery: Any
) -> None:
    """Frozen longer than ``hub_lease_ttl``: the hub's lease is gone, so it campaigns again once etcd
    answers; the new term starts from the stored statuses (no flip of the steady instance) and finds the
    change that happened meanwhile."""
    async with (
        HttpHealthServer() as steady,
        HttpHealthServer() as failing,
        served(own_etcd.client_url, request_timeout=str(REQUEST_TIMEOUT), hub_lease_ttl="3") as client,
    ):
        before = await both_passing(client, steady, failing)
        own_etcd.pause()
        failing.status = 503
        await anyio.sleep(6)  # twice the lease TTL
        own_etcd.resume()
        resumed = Stopwatch()

        after = await critical_once_etcd_answers(client, failing)
        recovery("SIGCONT after a freeze past the hub lease → statuses converged", resumed.elapsed())
        assert after[steady.addr]["status"] == "passing"
        assert after[steady.addr]["since"] == before[steady.addr]["since"]
