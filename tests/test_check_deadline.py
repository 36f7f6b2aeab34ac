"""A probe that hangs (a bug in it) cannot stall its instance: the hub's loop gives up on it after the
check's timeout plus a grace, reports the instance critical, and goes on checking."""

from __future__ import annotations

import anyio
import pytest
from health_servers import HttpHealthServer
from registry_helpers import eventually, register, registry_keys, running_hub, status_of, wait_status

from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.registry import CheckSpec, hub
from kk_etcd_mcp.registry.checkers import CheckResult, Prober

pytestmark = pytest.mark.anyio


async def test_a_hung_probe_is_cut_off_and_the_loop_goes_on(
    etcd_endpoint: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = registry_keys(key_prefix)
    monkeypatch.setattr(hub, "PROBE_GRACE", 0.5)
    hung = {"web": True}
    real_check = Prober.check

    async def check(self: Prober, instance_id: str, spec: CheckSpec) -> CheckResult:
        if hung["web"] and instance_id.startswith("Http/web/"):
            await anyio.sleep_forever()  # what a probe that never honours its own timeout does
        return await real_check(self, instance_id, spec)

    monkeypatch.setattr(Prober, "check", check)
    async with HttpHealthServer() as server, EtcdClient([etcd_endpoint]) as etcd, running_hub(etcd, keys):
        key = await register(etcd, keys, "web", server.addr, failures_before_critical=1)  # timeout 1 s

        async def cut_off() -> str | None:
            status = await status_of(etcd, keys, key)
            return status.output if status is not None and status.status == "critical" else None

        output = await eventually(cut_off, "the hung check is reported")
        assert output == "check did not end within 1.5s: the probe hung (a bug; see the server log)"

        hung["web"] = False
        passing = await wait_status(etcd, keys, key, "passing")  # the loop went on to the next check
        assert passing.output.startswith("HTTP GET")
