"""Sharded health checking: N ``kk-etcd-mcp hub`` processes share the checking; is there a coordination tax?

    python bench/hub_shards.py [--hubs 1 2 3] [--per-hub 3000] [--duration 20] [--lease-ttl 10] [--quick]
    python bench/hub_shards.py --simulate [--sim-hubs 100] [--sim-instances 1000000] [--quick]

Hubs: one run starts its own etcd (embedded, free loopback ports, temp data dir) and one health-target
process (bench/health_targets.py, as bench/hub_scale.py uses it: every instance its own loopback host,
one listener). For each hub count N it registers N x ``--per-hub`` HTTP instances (interval 5 s), starts
N real ``kk-etcd-mcp hub`` processes (hub_mode sharded, each with ``--metrics-port``), waits until every
instance's status names its rendezvous owner, lets the first checks' spread pass, then measures each
hub over ``--duration`` seconds: its CPU (all threads, /proc), checks/s and p99 lateness (from its
Prometheus histogram: the deltas over the window, interpolated within a bucket as Prometheus'
histogram_quantile does), and its etcd writes/s. CPU per check of each hub is compared with the single
hub's in the same run: the aim is within 1.2x (no coordination tax worth the name), p99 < 250 ms.
With the largest N, one more hub joins, then leaves (SIGTERM): the instances that moved (read from the
statuses' ``checker``) against the ideal 1/(N+1), and the time until every status names its new owner.

``--simulate``: no I/O at all, only ``registry/rendezvous.py``: ``--sim-hubs`` members and
``--sim-instances`` instances, split over one worker process per core. It prints the share per hub
(min, max, spread against the fair share), the moves when one hub joins and when one leaves, and the
time to compute each change, summed over the workers (what one hub would spend on it alone).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import anyio
from hub_scale import build_registrations, process_cpu_s, register, start_targets
from prometheus_client.parser import text_string_to_metric_families
from verdicts import verdict  # bench/ is sys.path[0] when a bench script runs

from kk_etcd_mcp.etcd import EtcdClient, prefix_end
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_port, free_ports
from kk_etcd_mcp.registry.keys import RegistryKeys
from kk_etcd_mcp.registry.membership import parse_member
from kk_etcd_mcp.registry.rendezvous import Ownership, owner_of

INTERVAL = 5.0
AIM_TAX = 1.2  # CPU per check per hub, against the single hub's
AIM_P99 = 0.250  # seconds
SETTLE_POLL = 2.0  # seconds between looks at the statuses while waiting (reading them all costs CPU)
FIRST_CHECKS_PER_SECOND = 500  # hub.FIRST_CHECKS_PER_SECOND["http"]: the first checks' spread


def note(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# Hub processes -------------------------------------------------------------------------------------


@dataclass
class Hub:
    process: subprocess.Popen[bytes]
    metrics_port: int
    log: IO[bytes]

    async def scrape(self, http: aiohttp.ClientSession) -> dict[str, float]:
        async with http.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as response:
            text = await response.text()
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                found[f"{sample.name}{{{labels}}}"] = sample.value
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def start_hub(endpoint: str, root: str, logs: Path, index: int, lease_ttl: int) -> Hub:
    port = free_port("127.0.0.1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KK_ETCD_")}
    env |= {"KK_ETCD_ENDPOINTS": endpoint, "KK_ETCD_REGISTRY_PREFIX": root, "KK_ETCD_HUB_MODE": "sharded"}
    env["KK_ETCD_HUB_LEASE_TTL"] = str(lease_ttl)
    log = (logs / f"hub-{root.strip('/').replace('/', '-')}-{index}.log").open("wb")
    command = [sys.executable, "-m", "kk_etcd_mcp", "hub", "--metrics-port", str(port)]
    return Hub(subprocess.Popen(command, env=env, stderr=log), port, log)


async def members(etcd: EtcdClient, keys: RegistryKeys) -> dict[str, float]:
    page = await etcd.range(keys.members, prefix_end(keys.members))
    return {info.hub_id: info.weight for kv in page.kvs if (info := parse_member(kv.value))}


async def checkers(etcd: EtcdClient, keys: RegistryKeys) -> dict[str, str]:
    """Instance path -> the hub its status names (plain json: this process shares the cores with the hubs)."""
    found: dict[str, str] = {}
    async for page in etcd.range_pages(keys.statuses, prefix_end(keys.statuses)):
        for kv in page.kvs:
            found[kv.key.decode().removeprefix(keys.statuses)] = json.loads(kv.value).get("checker", "")
    return found


async def settle(etcd: EtcdClient, keys: RegistryKeys, hubs: int, n: int, limit: float) -> tuple[dict[str, str], float]:
    """Wait until ``hubs`` members are live and all ``n`` statuses name their owner; (checkers, seconds)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        group = await members(etcd, keys)
        if len(group) == hubs:
            found = await checkers(etcd, keys)
            if len(found) == n and all(owner_of(path, group) == hub for path, hub in found.items()):
                return found, time.monotonic() - started
        await anyio.sleep(SETTLE_POLL)
    raise TimeoutError(f"{hubs} hubs did not settle on {n} instances within {limit:g}s")


# Figures -------------------------------------------------------------------------------------------


def delta(after: dict[str, float], before: dict[str, float], prefix: str) -> float:
    return sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix))


def histogram_p99(after: dict[str, float], before: dict[str, float], name: str) -> float:
    """p99 of a histogram's observations between two scrapes, interpolated within its bucket."""
    buckets = []
    for key, value in after.items():
        if key.startswith(f"{name}_bucket{{"):
            bound = key.split("le=")[1].rstrip("}").split(",")[0]
            buckets.append((math.inf if bound == "+Inf" else float(bound), value - before.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return math.nan
    rank, lower, below = 0.99 * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return math.nan


@dataclass
class HubFigures:
    cpu: float  # cores
    checks_per_s: float
    p99: float  # seconds
    writes_per_s: float

    @property
    def cpu_per_check_us(self) -> float:
        return self.cpu / self.checks_per_s * 1e6 if self.checks_per_s else math.nan


@dataclass
class Phase:
    hubs: int
    n: int
    figures: list[HubFigures] = field(default_factory=list)
    join: tuple[int, float] | None = None  # (moved, seconds to settle)
    leave: tuple[int, float] | None = None
    error: str | None = None


async def measure(hubs: list[Hub], duration: float) -> list[HubFigures]:
    async with aiohttp.ClientSession() as http:
        before = [await hub.scrape(http) for hub in hubs]
        cpu_before = [process_cpu_s(hub.process.pid) for hub in hubs]
        started = time.monotonic()
        await anyio.sleep(duration)
        after = [await hub.scrape(http) for hub in hubs]
        cpu_after = [process_cpu_s(hub.process.pid) for hub in hubs]
        elapsed = time.monotonic() - started
    return [
        HubFigures(
            cpu=(cpu_after[i] - cpu_before[i]) / elapsed,
            checks_per_s=delta(after[i], before[i], "kk_etcd_mcp_checks_total") / elapsed,
            p99=histogram_p99(after[i], before[i], "kk_etcd_mcp_check_lateness_seconds"),
            writes_per_s=delta(after[i], before[i], "kk_etcd_mcp_status_writes_total") / elapsed,
        )
        for i in range(len(hubs))
    ]


async def phase(args: argparse.Namespace, etcd_url: str, etcd: EtcdClient, port: int, logs: Path, count: int) -> Phase:
    n = count * args.per_hub
    keys = RegistryKeys(f"bench-shards-{count}/kk_service/")
    note(f"{count} hub(s), {n} HTTP instances: registering")
    await register(etcd, keys, build_registrations("http", n, port, []))
    hubs = [start_hub(etcd_url, keys.root, logs, i, args.lease_ttl) for i in range(count)]
    result = Phase(count, n)
    try:
        _, took = await settle(etcd, keys, count, n, limit=120)
        warmup = max(INTERVAL, args.per_hub / FIRST_CHECKS_PER_SECOND) + INTERVAL
        note(f"settled in {took:.1f}s; letting the first checks' spread pass ({warmup:.0f}s), then measuring")
        await anyio.sleep(warmup)
        result.figures = await measure(hubs, args.duration)
        if count == max(args.hubs):
            await join_and_leave(args, etcd_url, etcd, keys, hubs, result, logs)
    finally:
        for hub in hubs:
            hub.stop()
        await etcd.delete(keys.root, prefix_end(keys.root))  # the next phase's hubs need not list these
    return result


async def join_and_leave(
    args: argparse.Namespace,
    etcd_url: str,
    etcd: EtcdClient,
    keys: RegistryKeys,
    hubs: list[Hub],
    result: Phase,
    logs: Path,
) -> None:
    """One more hub joins, then leaves: what moves, and how long until every status names its owner."""
    count, n = result.hubs, result.n
    try:
        before, _ = await settle(etcd, keys, count, n, limit=30)
        hubs.append(start_hub(etcd_url, keys.root, logs, count, args.lease_ttl))
        joined, took = await settle(etcd, keys, count + 1, n, limit=120)
        result.join = (sum(1 for path, hub in joined.items() if before[path] != hub), took)
        note(f"join: {result.join[0]} moved, settled in {took:.1f}s")
        began = time.monotonic()
        hubs.pop().stop()  # SIGTERM: it revokes its lease on the way out
        left, _ = await settle(etcd, keys, count, n, limit=120)
        took = time.monotonic() - began
        result.leave = (sum(1 for path, hub in left.items() if joined[path] != hub), took)
        note(f"leave: {result.leave[0]} moved, settled in {took:.1f}s")
    except TimeoutError as error:  # reported with the figures measured so far
        result.error = f"join/leave: {error} (see the hubs' logs: --keep-logs)"
        note(result.error)


def report(phases: list[Phase]) -> None:
    single = [f.cpu_per_check_us for p in phases if p.hubs == 1 for f in p.figures]
    base = single[0] if single else math.nan
    print(f"\n{'hubs':>4} {'hub':>3} {'instances':>9} {'CPU':>6} {'checks/s':>9} {'CPU/check':>10} {'x 1 hub':>8} "
          f"{'p99 late':>9} {'writes/s':>9}")  # fmt: skip
    worst_tax, worst_p99 = 0.0, 0.0
    for p in phases:
        for i, f in enumerate(p.figures):
            tax = f.cpu_per_check_us / base if base == base else math.nan
            worst_tax = max(worst_tax, tax) if tax == tax else worst_tax
            worst_p99 = max(worst_p99, f.p99) if f.p99 == f.p99 else worst_p99
            cells = f"{p.hubs:>4} {i:>3} {p.n // p.hubs:>9} {f.cpu * 100:>5.1f}% {f.checks_per_s:>9.0f} "
            print(cells + f"{f.cpu_per_check_us:>8.0f}us {tax:>7.2f}x {f.p99 * 1000:>7.0f}ms {f.writes_per_s:>9.2f}")
        if p.error is not None:
            print(f"     {p.error}")
        for what, change in (("joins", p.join), ("leaves", p.leave)):
            if change is not None:
                ideal = p.n / (p.hubs + 1)
                moved = f"{change[0]} instances moved ({change[0] / ideal:.2f}x the ideal {ideal:.0f})"
                settled = f"every status named its owner {change[1]:.1f}s after its start or SIGTERM"
                print(f"     one hub {what} {p.hubs}: {moved}; {settled}")
    print()
    verdict(f"CPU per check per hub <= {AIM_TAX}x the single hub's", f"{worst_tax * base:.0f} us", f"{base:.0f} us",
            f"{worst_tax:.2f}x", worst_tax <= AIM_TAX)  # fmt: skip
    verdict(f"p99 lateness < {AIM_P99 * 1000:.0f} ms", f"{worst_p99 * 1000:.0f} ms", "-", "-", worst_p99 < AIM_P99)


async def run_hubs(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="kk-shards-bench-") as tmp_name:
        tmp = Path(tmp_name)
        client_port, peer_port = free_ports(2)
        etcd = EmbeddedEtcd(tmp / "etcd", client_port, peer_port, log_file=tmp / "etcd.log")
        note(f"starting etcd at {etcd.client_url} and a health-target process")
        await etcd.astart()
        phases: list[Phase] = []
        try:
            async with (
                EtcdClient([etcd.client_url]) as client,
                start_targets(1, 0, tmp / "targets.log") as targets,
            ):
                for count in args.hubs:
                    phases.append(await phase(args, etcd.client_url, client, targets.http_port, tmp, count))
        finally:
            await etcd.astop()
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in tmp.glob("*.log"):
                    (args.keep_logs / log.name).write_bytes(log.read_bytes())
        report(phases)


# Simulation ----------------------------------------------------------------------------------------


def _simulate_chunk(hubs: int, start: int, stop: int) -> tuple[Counter[str], float, int, float, int, float]:
    """One worker's share of the instances: (shares, placement s, moved on join, join s, moved on leave, leave s)."""
    group = {f"hub-{i:03d}.example:{9000 + i}": 1.0 for i in range(hubs)}
    ownership = Ownership(group)
    started = time.process_time()
    for i in range(start, stop):
        ownership.add(f"Http/svc-{i % 1000}/10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:{8000 + i % 50}")
    placed = time.process_time() - started
    shares = Counter(ownership.shares())
    started = time.process_time()
    joined = ownership.set_members(group | {"joiner.example:9999": 1.0})
    join_s = time.process_time() - started
    leaver = sorted(group)[hubs // 2]
    started = time.process_time()
    left = ownership.set_members({m: w for m, w in group.items() if m != leaver} | {"joiner.example:9999": 1.0})
    leave_s = time.process_time() - started
    return shares, placed, len(joined), join_s, len(left), leave_s


def simulate(hubs: int, instances: int) -> None:
    workers = os.cpu_count() or 1
    bounds = [instances * w // workers for w in range(workers + 1)]
    note(f"simulating {hubs} hubs x {instances:,} instances in {workers} worker process(es)")
    wall = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_simulate_chunk, [hubs] * workers, bounds[:-1], bounds[1:]))
    wall = time.perf_counter() - wall
    shares: Counter[str] = Counter()
    for part in parts:
        shares.update(part[0])
    fair = instances / hubs
    values = sorted(shares.values())
    spread = max(abs(values[0] - fair), abs(values[-1] - fair)) / fair
    stdev = math.sqrt(sum((v - fair) ** 2 for v in values) / len(values))
    placed, joined, join_s = sum(p[1] for p in parts), sum(p[2] for p in parts), sum(p[3] for p in parts)
    left, leave_s = sum(p[4] for p in parts), sum(p[5] for p in parts)
    print(f"\n{hubs} hubs x {instances:,} instances (weights 1; {wall:.1f}s wall in {workers} processes)")
    print(f"share per hub: min {values[0]:,}, max {values[-1]:,}, fair {fair:,.0f}; worst {spread * 100:.1f}% "
          f"from fair, standard deviation {stdev / fair * 100:.2f}%")  # fmt: skip
    ideal_join, ideal_leave = instances / (hubs + 1), instances / (hubs + 1)
    print(f"one hub joins: {joined:,} instances move ({joined / ideal_join:.2f}x the ideal {ideal_join:,.0f}); "
          f"computing it took {join_s:.2f}s of CPU")  # fmt: skip
    print(f"one hub leaves: {left:,} instances move ({left / ideal_leave:.2f}x the ideal {ideal_leave:,.0f}); "
          f"computing it took {leave_s:.2f}s of CPU")  # fmt: skip
    print(f"first placement of every instance: {placed:.1f}s of CPU ({placed / instances * 1e6:.0f} us per instance)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubs", type=int, nargs="+", default=[1, 2, 3], help="hub counts (default 1 2 3)")
    parser.add_argument("--per-hub", type=int, default=3000, help="HTTP instances per hub (default 3000)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per phase (default 20)")
    parser.add_argument("--lease-ttl", type=int, default=10, help="the hubs' hub_lease_ttl (default 10)")
    parser.add_argument("--keep-logs", type=Path, help="copy the etcd, target and hub logs here")
    parser.add_argument("--simulate", action="store_true", help="simulate ownership only (no I/O)")
    parser.add_argument("--sim-hubs", type=int, default=100, help="hubs in the simulation (default 100)")
    parser.add_argument("--sim-instances", type=int, default=1_000_000, help="instances (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 and 2 hubs x 500, or 100,000 simulated")
    args = parser.parse_args()
    if min(args.hubs) < 1 or args.per_hub < 1 or args.duration <= 0 or args.sim_hubs < 2 or args.sim_instances < 1:
        parser.error("hub counts, --per-hub, --sim-instances must be positive, --sim-hubs at least 2, --duration > 0")
    started = time.perf_counter()
    if args.simulate:
        simulate(args.sim_hubs, 100_000 if args.quick else args.sim_instances)
    else:
        if args.quick:
            args.hubs, args.per_hub, args.duration = [1, 2], 500, 8.0
        anyio.run(run_hubs, args, backend="asyncio")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n(total run time {time.perf_counter() - started:.1f} s; load average at the end: {load})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
