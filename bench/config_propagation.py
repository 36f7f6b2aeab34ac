"""How fast a configuration change reaches running services: from the write's acknowledgement to the
watcher's delivery of the parsed, validated value.

    python bench/config_propagation.py [--watchers 100] [--writes 200] [--rounds 5] [--quick]

One run starts its own etcd (embedded, free loopback ports, temp data dir) and, in this one process,

* ``ConfigClient``: ``--watchers`` live values (``config.watch(key, Model)``), one per key, each
  delivering the JSON value parsed and validated into a pydantic model to an ``on_change`` callback;
* ``etcd3aio``: as many bare etcd3aio watches on their own keys (no parsing): etcd's own watch
  latency as seen from Python, the floor.

A writer then changes one key at a time, round robin, and waits for its delivery before the next write:
``direct`` writes with ``EtcdClient.put`` from this process; ``mcp`` calls the ``kv_put`` tool of a real
``kk-etcd-mcp serve`` over stdio. Two latencies per write: ``after ack``, the delivery time minus the
moment the write returned (negative when the watcher had the value before the writer had its answer,
which is common: etcd sends the event and the response at once, and an MCP response still has to
cross stdio), and ``from write``, the delivery time minus the moment the write was sent (always
positive; it includes the write's round trip, the same for both watcher kinds). The cases run in
interleaved rounds so that load elsewhere on the machine hits each alike. Printed: p50 and p99 of both
per case, our ``from write`` p50/p99 as a multiple of the bare watch's, and the targets (direct writes:
p99 after the ack < 20 ms; from the write <= 1.5x the bare watch) as PASS/MISS; informational, the
exit code is 0 unless something failed. ``--quick``: 10 watchers, 40 writes, 2 rounds (seconds; for CI
and a first look).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from etcd3aio.client import Etcd3Client
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from pydantic import BaseModel
from verdicts import verdict  # bench/ is sys.path[0] when a bench script runs

from kk_etcd_mcp import ConfigClient
from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_ports

DELIVERY_TIMEOUT = 10.0  # a write whose delivery does not come within this fails the case
TARGET_P99_MS = 20.0
TARGET_RATIO = 1.5


class Pool(BaseModel):
    """The value every watcher validates: a small but real configuration document."""

    seq: int
    host: str
    port: int
    size: int
    tags: list[str]


def document(seq: int) -> str:
    return json.dumps({"seq": seq, "host": "db.internal", "port": 5432, "size": 10 + seq % 7, "tags": ["a", "b"]})


@dataclass
class Watchers:
    """One kind of watcher over its own keys; ``arrived(key, seq)`` is called on each delivery."""

    name: str
    keys: list[str]
    expected: dict[str, tuple[int, anyio.Event]] = field(default_factory=dict)
    delivered_at: dict[str, float] = field(default_factory=dict)

    def arrived(self, key: str, seq: int) -> None:
        now = time.perf_counter()
        waiting = self.expected.get(key)
        if waiting is not None and waiting[0] == seq:
            self.delivered_at[key] = now
            waiting[1].set()


@dataclass
class Case:
    writer: str
    watchers: Watchers
    after_ack: list[float] = field(default_factory=list)
    from_write: list[float] = field(default_factory=list)
    error: str | None = None


def pct(samples: list[float], p: float) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


Write = Callable[[str, str], Awaitable[Any]]


async def measure(case: Case, write: Write, writes: int, seq_start: int) -> None:
    keys = case.watchers.keys
    for i in range(writes):
        seq = seq_start + i
        key = keys[seq % len(keys)]
        event = anyio.Event()
        case.watchers.expected[key] = (seq, event)
        sent = time.perf_counter()
        await write(key, document(seq))
        acknowledged = time.perf_counter()
        with anyio.fail_after(DELIVERY_TIMEOUT):
            await event.wait()
        case.after_ack.append(case.watchers.delivered_at[key] - acknowledged)
        case.from_write.append(case.watchers.delivered_at[key] - sent)


async def open_config_watchers(stack: AsyncExitStack, endpoint: str, keys: list[str]) -> Watchers:
    watchers = Watchers("ConfigClient", keys)
    config = await stack.enter_async_context(ConfigClient([endpoint]))
    for key in keys:
        live = await stack.enter_async_context(config.watch(key, Pool, format="json"))
        live.on_change(lambda pool, key=key: watchers.arrived(key, pool.seq))
    return watchers


async def open_bare_watchers(stack: AsyncExitStack, etcd: EmbeddedEtcd, keys: list[str]) -> Watchers:
    watchers = Watchers("etcd3aio", keys)
    raw = Etcd3Client(endpoints=[f"{etcd.host}:{etcd.client_port}"])
    await raw.connect()
    stack.push_async_callback(raw.close)
    tg = await stack.enter_async_context(anyio.create_task_group())
    stack.callback(tg.cancel_scope.cancel)
    service = raw.watch
    assert service is not None

    async def follow(key: str, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        stream = service.watch(key)
        started = False
        async for response in stream:
            if not started:  # the created response: the watch exists
                started = True
                task_status.started()
            for event in response.events:
                watchers.arrived(key, json.loads(event.kv.value)["seq"])

    for key in keys:
        await tg.start(follow, key)
    return watchers


async def open_mcp_writer(stack: AsyncExitStack, endpoint: str, log: Path) -> Write:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KK_ETCD_")}
    env |= {"KK_ETCD_ENDPOINTS": endpoint, "KK_ETCD_CONFIRM_DESTRUCTIVE": "allow"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "kk_etcd_mcp", "serve"], env=env)
    errlog = stack.enter_context(log.open("w"))
    client = await stack.enter_async_context(Client(stdio_client(params, errlog=errlog)))

    async def write(key: str, value: str) -> None:
        result = await client.call_tool("kv_put", {"key": key, "value": value, "format": "json"})
        if result.is_error:
            raise RuntimeError(f"kv_put failed: {result.content}")

    return write


async def run(args: argparse.Namespace) -> list[Case]:
    cases: list[Case] = []
    with tempfile.TemporaryDirectory(prefix="kk-bench-") as tmp_name:
        tmp = Path(tmp_name)
        client_port, peer_port = free_ports(2)
        etcd = EmbeddedEtcd(tmp / "etcd", client_port, peer_port, log_file=tmp / "etcd.log")
        print(f"starting etcd at {etcd.client_url} ...", file=sys.stderr)
        await etcd.astart()
        try:
            async with AsyncExitStack() as stack:
                writer = await stack.enter_async_context(EtcdClient([etcd.client_url]))
                ours_keys = [f"bench/config/{i:03d}" for i in range(args.watchers)]
                bare_keys = [f"bench/bare/{i:03d}" for i in range(args.watchers)]
                for key in ours_keys + bare_keys:  # every watcher starts with a valid value
                    await writer.put(key, document(-1))
                print(f"opening {args.watchers} + {args.watchers} watchers ...", file=sys.stderr)
                ours = await open_config_watchers(stack, etcd.client_url, ours_keys)
                bare = await open_bare_watchers(stack, etcd, bare_keys)
                print("starting kk-etcd-mcp serve (stdio) ...", file=sys.stderr)
                mcp_write = await open_mcp_writer(stack, etcd.client_url, tmp / "serve.log")

                async def direct_write(key: str, value: str) -> None:
                    await writer.put(key, value)

                writes: dict[str, Write] = {"direct": direct_write, "mcp stdio": mcp_write}
                cases = [Case(w, watchers) for w in writes for watchers in (bare, ours)]
                per_round = max(1, args.writes // args.rounds)
                seq = 0
                for case in cases:  # warm-up: connections, caches, the server's first calls
                    await measure(Case(case.writer, case.watchers), writes[case.writer], min(20, per_round), seq)
                    seq += per_round
                for round_no in range(args.rounds):
                    print(f"round {round_no + 1}/{args.rounds} ...", file=sys.stderr)
                    for case in cases:
                        if case.error is None:
                            try:
                                await measure(case, writes[case.writer], per_round, seq)
                            except Exception as exc:  # report the case as failed, measure the others
                                case.error = f"{type(exc).__name__}: {exc}"
                            seq += per_round
        finally:
            await etcd.astop()
    return cases


def report(cases: list[Case], args: argparse.Namespace) -> bool:
    print()
    print(
        f"config propagation: {args.watchers} watchers of each kind, {args.writes} writes per case "
        f"({args.rounds} interleaved rounds), python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    )
    print("delivery: the value reached the callback (ConfigClient: parsed and validated into a model)")
    print("after ack: delivery - the write's return (negative: before it); from write: delivery - the write's start")
    header = (
        f"{'writer':<11}{'watcher':<14}{'after ack p50':>14}{'p99 ms':>8}"
        f"{'from write p50':>15}{'p99 ms':>8}{'x bare p50':>11}{'x bare p99':>11}"
    )
    print(header)
    print("-" * len(header))
    by = {(c.writer, c.watchers.name): c for c in cases}
    for case in cases:
        if case.error is not None:
            print(f"{case.writer:<11}{case.watchers.name:<14}  FAILED: {case.error}")
            continue
        bare = by[case.writer, "etcd3aio"]
        ratio50 = ratio99 = "-"
        if case is not bare and bare.error is None:
            ratio50 = f"{pct(case.from_write, 50) / pct(bare.from_write, 50):.2f}x"
            ratio99 = f"{pct(case.from_write, 99) / pct(bare.from_write, 99):.2f}x"
        print(
            f"{case.writer:<11}{case.watchers.name:<14}{pct(case.after_ack, 50) * 1e3:>14.3f}"
            f"{pct(case.after_ack, 99) * 1e3:>8.3f}{pct(case.from_write, 50) * 1e3:>15.3f}"
            f"{pct(case.from_write, 99) * 1e3:>8.3f}{ratio50:>11}{ratio99:>11}"
        )
    ours, bare = by["direct", "ConfigClient"], by["direct", "etcd3aio"]
    print()
    if ours.error is None and bare.error is None:
        p99 = pct(ours.after_ack, 99) * 1e3
        ratio = pct(ours.from_write, 99) / pct(bare.from_write, 99)
        bare99 = pct(bare.from_write, 99) * 1e3
        ours99 = pct(ours.from_write, 99) * 1e3
        verdict(f"direct writes: ConfigClient p99 after the ack < {TARGET_P99_MS:g} ms", f"{p99:.3f} ms", "-", "-",
                p99 < TARGET_P99_MS)  # fmt: skip
        verdict(f"direct writes: ConfigClient p99 from the write <= {TARGET_RATIO}x a bare etcd3aio watch",
                f"{ours99:.3f} ms", f"{bare99:.3f} ms", f"{ratio:.2f}x", ratio <= TARGET_RATIO)  # fmt: skip
    return all(c.error is None for c in cases)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=100, help="watchers of each kind, one key each")
    parser.add_argument("--writes", type=int, default=200, help="measured writes per case")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the writes are split into")
    parser.add_argument("--quick", action="store_true", help="10 watchers, 40 writes, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.watchers, args.writes, args.rounds = 10, 40, 2
    cases = anyio.run(run, args)
    return 0 if report(cases, args) else 1


if __name__ == "__main__":
    sys.exit(main())
