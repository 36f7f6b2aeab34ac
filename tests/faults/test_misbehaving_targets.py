"""Fault 8: health targets that misbehave, checked by a running hub.

A target that accepts and never answers, answers past the timeout, sends a 1 GB body, resets the
connection, or answers the gRPC probe with garbage ends as a clean ``critical`` with a short output,
and the hub's memory stays flat while it keeps checking them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from health_servers import HttpHealthServer, RawTcpServer
from registry_helpers import eventually, register, registry_keys, running_hub, status_of, wait_status

from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.registry import InstanceKey

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

GIB = 1 << 30
MAX_OUTPUT = 4096 + 200  # a body is capped at 4 KB; the rest is the request and status line
ROUNDS = 8  # checks of every target (interval 1 s) between the two memory readings


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def test_misbehaving_targets_end_critical_with_short_output_and_flat_memory(
    etcd_endpoint: str, key_prefix: str, recovery: Any
) -> None:
    keys = registry_keys(key_prefix)
    async with (
        RawTcpServer("silent") as silent,
        RawTcpServer("reset") as reset,
        RawTcpServer("garbage") as garbage,
        HttpHealthServer() as slow,
        HttpHealthServer() as huge_error,
        HttpHealthServer() as huge_ok,
        EtcdClient([etcd_endpoint]) as etcd,
        running_hub(etcd, keys) as runner,
    ):
        slow.delay = 3  # past the 1 s timeout
        huge_error.status, huge_error.stream_bytes = 500, GIB
        huge_ok.stream_bytes = GIB  # 2xx is passing whatever the body; only 4 KB of it is read
        targets: dict[str, tuple[InstanceKey, str]] = {
            "http silent": (await register(etcd, keys, "http-silent", silent.addr), "timed out after 1s"),
            "http reset": (await register(etcd, keys, "http-reset", reset.addr), "connection reset"),
            "http garbage": (await register(etcd, keys, "http-garbage", garbage.addr), "invalid response"),
            "http slow": (await register(etcd, keys, "http-slow", slow.addr), "timed out after 1s"),
            "http 1 GB error": (await register(etcd, keys, "http-huge", huge_error.addr), "500"),
            "grpc silent": (await register(etcd, keys, "grpc-silent", silent.addr, "grpc"), "timed out after 1s"),
            "grpc garbage": (await register(etcd, keys, "grpc-garbage", garbage.addr, "grpc"), ""),
            "grpc reset": (await register(etcd, keys, "grpc-reset", reset.addr, "grpc"), ""),
        }
        passing_huge = await register(etcd, keys, "http-huge-ok", huge_ok.addr)

        for what, (key, expected) in targets.items():
            status = await wait_status(etcd, keys, key, "critical")
            assert expected in status.output, (what, status.output)
            assert len(status.output.encode()) <= MAX_OUTPUT, (what, len(status.output))
            assert "Traceback" not in status.output
        ok = await wait_status(etcd, keys, passing_huge, "passing")
        assert len(ok.output.encode()) <= MAX_OUTPUT

        hub = runner.hub
        assert hub is not None
        checks = hub.stats.checks
        before = rss_bytes()
        await eventually(
            lambda: hub.stats.checks >= checks + ROUNDS * (len(targets) + 1), f"{ROUNDS} more rounds", within=60
        )
        grown = rss_bytes() - before
        recovery(f"hub memory growth over {ROUNDS} rounds of misbehaving checks", grown / 2**20, "MiB")
        # Reading one of the 1 GB bodies whole, or keeping the connections, would show here at once.
        assert grown < 32 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB"
        assert huge_error.bytes_sent < GIB and huge_ok.bytes_sent < GIB
        for key, _ in targets.values():
            assert (await status_of(etcd, keys, key)).status == "critical"  # type: ignore[union-attr]
