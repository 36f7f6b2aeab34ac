"""One client's big values cannot stall the others, nor make their calls fail with "etcd unavailable".

A YAML value of a few hundred KiB takes the safe loader seconds to parse: the server parses such
values in worker threads, and counts an etcd call's timeout only while its event loop runs. Outcomes
are asserted (which calls succeed, which finish first), never durations.
"""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest
from mcp_helpers import error_text, served

from kk_etcd_mcp.etcd import EtcdClient

pytestmark = pytest.mark.anyio

BIG_READS = 2


def slow_yaml(limit: int) -> str:
    """A YAML mapping of at most ``limit`` bytes that is slow to parse (many small flow collections)."""
    lines, size = [], 0
    while True:
        line = f"k{len(lines)}: [a, b, {{x: 1}}]\n"
        if size + len(line) > limit:
            return "".join(lines)
        lines.append(line)
        size += len(line)


async def test_big_yaml_reads_do_not_stall_a_small_call(etcd_endpoint: str, key_prefix: str) -> None:
    big, small = f"{key_prefix}big", f"{key_prefix}small"
    async with EtcdClient([etcd_endpoint]) as etcd:  # etcdctl takes a value this big only on stdin
        await etcd.put(big, slow_yaml(200_000))  # most of a second of parsing each, here
        await etcd.put(small, "tiny")
    finished: list[str] = []
    errors: list[str] = []
    async with served(etcd_endpoint, hub="false") as client:

        async def read(name: str, key: str) -> None:
            result = await client.call_tool("kv_get", {"key": key})
            if result.is_error:
                errors.append(f"{name}: {error_text(result)}")
            finished.append(name)

        async with anyio.create_task_group() as tg:
            for n in range(BIG_READS):
                tg.start_soon(read, f"big{n}", big)
            await anyio.wait_all_tasks_blocked()  # the big reads are sent first
            for n in range(3):  # one after the other, each while the big ones are still being parsed
                await read(f"small{n}", small)
    assert errors == []
    # Parsed on the event loop, a big value would hold up everything queued behind it.
    assert finished[:3] == ["small0", "small1", "small2"], finished


# Seconds the loop is blocked, each after one step of the read: one long stall once the request is
# under way (two steps in), or many short ones all along.
@pytest.mark.parametrize("stalls", [[0.0, 0.0, 2.0], [0.2] * 10], ids=["one long stall", "many short stalls"])
async def test_a_stalled_event_loop_does_not_make_etcd_look_unavailable(
    etcd_endpoint: str, key_prefix: str, stalls: list[float]
) -> None:
    """etcd answers at once, but this process's loop is blocked (as by a big parse on it) past the
    request timeout, while the request is being sent or its answer waits to be read."""
    async with EtcdClient([etcd_endpoint], request_timeout=0.5) as etcd:
        await etcd.put(f"{key_prefix}k", "v")
        got: list[bytes] = []

        async def read() -> None:
            kv = await etcd.get(f"{key_prefix}k")
            assert kv is not None
            got.append(kv.value)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            for stall in stalls:
                await anyio.lowlevel.checkpoint()  # one step for the read, then the loop is blocked again
                time.sleep(stall)
        assert got == [b"v"]
