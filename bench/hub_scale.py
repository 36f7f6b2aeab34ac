"""The hub's health-check engine at scale: N instances checked every 5 s, ours next to a naive loop (issue 3).

    python bench/hub_scale.py [--n 1000 10000] [--kind http|grpc|both] [--duration 10] [--find-max] [--quick]

One run starts its own etcd (embedded, free loopback ports, temp data dir) and health targets
(bench/health_targets.py: a raw asyncio HTTP responder and a grpc.aio server with grpcio-health-checking's
HealthServicer, in ``--targets`` processes sharing the ports through SO_REUSEPORT). Every instance has
its own loopback host (127.a.b.c:port; Linux routes all of 127.0.0.0/8 to lo), so the hub keeps one
connection per instance as it would in reality, while one listener serves them all.

For each kind (http, grpc) and each N it registers N instances (txns of 100 puts; interval 5 s,
timeout 5 s), then runs two hubs in turn, each in a child process of its own (so the hub's CPU is
that process's CPU, all threads):

* ours:  ``HubRunner`` as shipped: one aiohttp session shared by all HTTP checks (keep-alive), one
         gRPC channel kept per instance.
* naive: the same ``HubRunner`` and ``Hub`` (same loops, same scheduling, same gc.freeze) with a
         prober that opens a new aiohttp ClientSession per HTTP check and a new gRPC channel per gRPC
         check.

Each hub first has to reach a steady state: the warm-up (the hub spreads the first checks over
max(interval, N / FIRST_CHECKS_PER_SECOND[kind]) s, plus a second), every instance checked once, no status
write queued, the event loop on time for a second; at most ``--settle-margin`` s after the warm-up.
Then it is measured for ``--duration`` seconds: checks/s, its CPU, the lateness of every check against
its slot (``HubStats.lateness``, across leadership terms), failed checks, leases lost, and new
connections/s seen by the targets. Then the victims (``--victims`` instances on ports of their own,
registered with failures_before_critical=1) are stopped, and the time until etcd holds their status
``critical`` is the detection latency (stop to status visible in etcd, as a client sees it).

The aim from the issue (10,000 instances at a 5 s interval, 2,000 checks/s, on this machine with
the hub under half a core and p99 lateness under 250 ms) is printed as PASS/MISS. It is informational:
the exit code is 0 unless a phase failed. ``--find-max`` then looks for the largest N that ours holds
(doubling, then bisecting; bounded by ``--find-max-minutes`` and by the open-file limit).

``--timeline`` makes each hub log its CPU, checks, event-loop lag, etcd round trip (through its own
client), status writes and GC pauses every second (``--keep-logs DIR`` keeps those logs); ``--py-spy
DIR`` records py-spy's collapsed stacks of each "ours" hub during its measured window
(``DIR/<kind>-<N>-ours.txt``; the figures are then inflated a little).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from verdicts import ratio_text, verdict

from kk_etcd_mcp.errors import KkEtcdError
from kk_etcd_mcp.etcd import EtcdClient, TxnOp, prefix_end
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_ports
from kk_etcd_mcp.registry import leadership
from kk_etcd_mcp.registry.checkers import CheckResult, Prober, probe_grpc, probe_http
from kk_etcd_mcp.registry.checkers.grpc import open_channel
from kk_etcd_mcp.registry.checkers.prober import USER_AGENT
from kk_etcd_mcp.registry.hub import FIRST_CHECKS_PER_SECOND, Hub, HubStats
from kk_etcd_mcp.registry.keys import WIRE_TYPES, RegistryKeys
from kk_etcd_mcp.registry.leadership import HubRunner
from kk_etcd_mcp.registry.model import CheckOptions, CheckSpec, Registration, ServiceType, resolve_check
from kk_etcd_mcp.registry.store import RegistryStore

BENCH_DIR = Path(__file__).resolve().parent
TARGETS_SCRIPT = BENCH_DIR / "health_targets.py"

INTERVAL = 5.0  # seconds between checks of one instance (issue 3)
TIMEOUT = 5.0
SERVICES = 100  # instances are spread over this many service names
VICTIM_NAME = "victim"
TXN_PUTS = 100  # etcd allows 128 operations per txn
AIM_N = 10_000
AIM_CORES = 0.5
AIM_P99 = 0.250  # seconds
RATE_OK = 0.97  # a hub "keeps up" when it runs at least this share of the scheduled checks
FD_RESERVE = 300  # descriptors the hub needs besides one per instance (etcd, pipes, epoll, grpc)


# Instances ---------------------------------------------------------------------------------------


def instance_host(i: int) -> str:
    """A distinct loopback host per instance: 127.10.0.1, 127.10.0.2, ... (250 per /24)."""
    return f"127.{10 + i // 62_500}.{(i // 250) % 250}.{i % 250 + 1}"


def build_registrations(kind: ServiceType, n: int, port: int, victim_ports: list[int]) -> list[Registration]:
    regs: list[Registration] = []

    # gRPC instances name a health service of their own, so the target can tell their connections apart.
    def options(service: str, failures: int = 3) -> CheckOptions:
        grpc_service = service if kind == "grpc" else None
        return CheckOptions(
            interval=INTERVAL, timeout=TIMEOUT, grpc_service=grpc_service, failures_before_critical=failures
        )

    for i in range(n - len(victim_ports)):
        addr = f"{instance_host(i)}:{port}"
        check = resolve_check(kind, addr, options(f"i{i}"))
        regs.append(Registration(type=kind, name=f"svc{i % SERVICES:03d}", addr=addr, check=check))
    for j, victim_port in enumerate(victim_ports):
        addr = f"127.0.1.{j + 1}:{victim_port}"
        check = resolve_check(kind, addr, options(f"v{j}", failures=1))
        regs.append(Registration(type=kind, name=VICTIM_NAME, addr=addr, check=check))
    return regs


async def register(etcd: EtcdClient, keys: RegistryKeys, regs: list[Registration]) -> None:
    store = RegistryStore(etcd, keys)
    ops = [op for r in regs for op in store.put_ops(r)]  # two per instance (kk_etcd_go's key and ours)
    chunks = [ops[i : i + TXN_PUTS] for i in range(0, len(ops), TXN_PUTS)]  # even: a pair stays together
    limiter = anyio.CapacityLimiter(8)

    async def write(chunk: list[TxnOp]) -> None:
        async with limiter:
            await etcd.txn([], chunk)

    async with anyio.create_task_group() as tg:
        for chunk in chunks:
            tg.start_soon(write, chunk)


# The hub process -----------------------------------------------------------------------------------


class CountingProber(Prober):
    """The shipped Prober, counting checks that did not pass (one attribute increment per check)."""

    current: CountingProber | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failed = 0
        self.last_failure = ""
        CountingProber.current = self

    async def check(self, instance_id: str, spec: CheckSpec) -> CheckResult:
        result = await self._probe(instance_id, spec)
        if result.status != "passing":
            self.failed += 1
            self.last_failure = result.output
        return result

    async def _probe(self, instance_id: str, spec: CheckSpec) -> CheckResult:
        return await super().check(instance_id, spec)


class NaiveProber(CountingProber):
    """One new client per check: a new aiohttp ClientSession (so a new connection) per HTTP check,
    a new gRPC channel (local subchannel pool: never shared) per gRPC check, closed after it."""

    async def _probe(self, instance_id: str, spec: CheckSpec) -> CheckResult:
        if spec.type == "http":
            async with aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(),
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            ) as session:
                return await probe_http(spec, session)
        if spec.type == "grpc":
            channel = await open_channel(spec)
            try:
                return await probe_grpc(spec, channel)
            finally:
                with anyio.CancelScope(shield=True):
                    await channel.close()
        return await super()._probe(instance_id, spec)


def _emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


class GcWatch:
    """Every garbage collection of this process: when it ended, its generation and its pause."""

    def __init__(self) -> None:
        self.events: list[tuple[float, int, float]] = []
        self._start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._start = now
        else:
            self.events.append((time.monotonic(), info["generation"], now - self._start))

    def summary(self, since: float, until: float) -> dict[str, float]:
        pauses = [(g, p) for t, g, p in self.events if since <= t <= until]
        full = [p for g, p in pauses if g == 2]
        return {
            "total": sum(p for _, p in pauses),
            "max": max((p for _, p in pauses), default=0.0),
            "full": len(full),
            "full_max": max(full, default=0.0),
        }


GC = GcWatch() if "--child" in sys.argv else None


async def hub_child(args: argparse.Namespace) -> None:
    """Run one HubRunner until SIGTERM; report its figures for one measured window on stdout."""
    leadership.Prober = NaiveProber if args.prober == "naive" else CountingProber  # type: ignore[attr-defined]
    keys = RegistryKeys(root=args.root)
    async with EtcdClient([args.endpoint]) as etcd, anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(stop_on_signal)
        started = time.monotonic()
        runner = HubRunner(etcd, keys)
        await tg.start(runner.run)
        if args.timeline:
            tg.start_soon(timeline, runner, etcd, started)
        while runner.hub is None or len(runner.hub.monitors) < args.n:
            await anyio.sleep(0.02)
        hub = runner.hub
        watch = HubWatch(runner)
        tg.start_soon(watch.run)
        prober = CountingProber.current
        assert prober is not None
        _emit(event="loaded", seconds=time.monotonic() - started, monitors=len(hub.monitors))
        warm = started + warmup(args.kind, args.n)
        settled = await settle(watch, warm, warm + args.settle_margin)
        _emit(event="settled", seconds=time.monotonic() - started, settled=settled)

        def snapshot() -> dict[str, Any]:
            return {
                "t": time.monotonic(),
                "cpu": time.process_time(),
                "loop_cpu": time.thread_time(),
                "checks": watch.checks(),
                "terms": len(watch.stats),
                "failed": prober.failed,
            }

        watch.keep_lateness(True)
        before = snapshot()
        _emit(event="window-start", t=before["t"])
        await anyio.sleep(args.duration)
        after = snapshot()
        lateness = watch.lateness()
        watch.keep_lateness(False)
        _emit(
            event="window-end",
            t=after["t"],
            seconds=after["t"] - before["t"],
            checks=after["checks"] - before["checks"],
            new_terms=after["terms"] - before["terms"],
            cpu=after["cpu"] - before["cpu"],
            loop_cpu=after["loop_cpu"] - before["loop_cpu"],
            failed=after["failed"] - before["failed"],
            last_failure=prober.last_failure[:300],
            lateness=_lateness_summary(lateness),
            rss_mb=_rss_mb(),
            fds=_open_fds(),
            gc=GC.summary(before["t"], after["t"]) if GC else {},
        )
        t0 = time.perf_counter()
        objects = len(gc.get_objects())
        found = gc.collect()
        print(
            f"after the window: {gc.get_freeze_count()} objects frozen (HubRunner._freeze_long_lived), {objects} "
            f"tracked by gc, gc.collect() of these took {(time.perf_counter() - t0) * 1e3:.0f} ms and found {found}",
            file=sys.stderr,
            flush=True,
        )
        await anyio.sleep_forever()


class HubWatch:
    """Follows ``runner.hub`` across terms: a lost lease ends the Hub, a new term starts another."""

    def __init__(self, runner: HubRunner) -> None:
        self.runner = runner
        self.current: Hub | None = None
        self.stats: list[HubStats] = []  # one per term seen (the stats only: old hubs may be freed)
        self._keep = False

    async def run(self) -> None:
        while True:
            hub = self.runner.hub
            if hub is not None and hub is not self.current:
                self.current = hub
                hub.stats.keep_lateness = self._keep
                self.stats.append(hub.stats)
            await anyio.sleep(0.05)

    def checks(self) -> int:
        return sum(s.checks for s in self.stats)

    def keep_lateness(self, keep: bool) -> None:
        """Start (clearing what was kept) or stop keeping the lateness of each check."""
        self._keep = keep
        for stats in self.stats:
            stats.keep_lateness = keep
            if keep:
                stats.lateness.clear()

    def lateness(self) -> list[float]:
        return [x for s in self.stats for x in s.lateness]


def warmup(kind: str, n: int) -> float:
    """Seconds from a hub's start until every first check is due (``Hub._sync`` spreads them), plus one."""
    return max(INTERVAL, n / FIRST_CHECKS_PER_SECOND[kind]) + 1.0


async def settle(watch: HubWatch, not_before: float, limit: float) -> bool:
    """Wait out the start: until ``not_before`` (the warm-up) and until every instance has been checked,
    the status writer has nothing queued and the event loop has run on time for a second. False when
    ``limit`` came first."""
    calm_since = None
    while True:
        before = time.monotonic()
        await anyio.sleep(0.05)
        now = time.monotonic()
        hub = watch.current
        calm = hub is not None and (
            now - before < 0.1
            and not getattr(hub.writer, "_pending", None)
            and all(m.checked_at is not None for m in hub.monitors.values())
        )
        calm_since = (calm_since or now) if calm else None
        if now >= not_before and calm_since is not None and now - calm_since >= 1.0:
            return True
        if now >= limit:
            return False


async def timeline(runner: HubRunner, etcd: EtcdClient, started: float) -> None:
    """Every second on stderr: the hub's CPU, checks, failures, worst event-loop lag, status writes,
    GC pauses, and the slowest etcd round trip (a get through the hub's own client, five a second)."""
    tick, last = 0.05, time.monotonic()
    cpu, checks, failed, writes, lag = time.process_time(), 0, 0, 0, 0.0
    rtt = [0.0, 0.0]  # the slowest etcd get since the last line; when the one in flight started (0: none)
    hub_id: int | None = None

    async def etcd_rtt() -> None:
        while True:
            rtt[1] = time.monotonic()
            with contextlib.suppress(KkEtcdError), anyio.move_on_after(30):
                await etcd.get(b"bench/rtt")  # a timeout (the client's own, 5 s) shows as its duration
            rtt[0], rtt[1] = max(rtt[0], time.monotonic() - rtt[1]), 0.0
            await anyio.sleep(0.2)

    async with anyio.create_task_group() as tg:
        tg.start_soon(etcd_rtt)
        while True:
            before = time.monotonic()
            await anyio.sleep(tick)
            now = time.monotonic()
            lag = max(lag, now - before - tick)
            if now - last < 1.0:
                continue
            hub, prober = runner.hub, CountingProber.current
            if (id(hub) if hub else None) != hub_id:
                hub_id, checks, writes = (id(hub) if hub else None), 0, 0
                term = f"new term: hub {runner.hub_id}" if hub else "no term: campaigning"
                print(f"{now - started:7.1f} s  {term}", file=sys.stderr, flush=True)
            c, f = (hub.stats.checks if hub else 0), (prober.failed if prober else 0)
            w, pending = (hub.writer.writes, len(hub.writer._pending)) if hub else (0, 0)
            cpu_now = time.process_time()
            slowest = max(rtt[0], now - rtt[1] if rtt[1] else 0.0)
            g = GC.summary(last, now) if GC else {"total": 0.0, "max": 0.0, "full": 0}
            print(
                f"{now - started:7.1f} s  cpu {(cpu_now - cpu) / (now - last):4.2f}"
                f"  checks/s {(c - checks) / (now - last):6.0f}  failed {f - failed:5d}"
                f"  loop lag {lag * 1e3:6.1f} ms  etcd rtt {slowest * 1e3:6.1f} ms"
                f"  status writes {w - writes:5d}  pending {pending:5d}  monitors {len(hub.monitors) if hub else 0}"
                f"  gc {g['total'] * 1e3:5.0f} ms, {g['full']:.0f} full, longest {g['max'] * 1e3:4.0f} ms",
                file=sys.stderr,
                flush=True,
            )
            cpu, checks, failed, writes, last, lag, rtt[0] = cpu_now, c, f, w, now, 0.0, 0.0


def _lateness_summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0, "p50": math.nan, "p99": math.nan, "max": math.nan}
    ordered = sorted(samples)
    return {
        "count": len(ordered),
        "p50": _percentile(ordered, 50),
        "p99": _percentile(ordered, 99),
        "max": ordered[-1],
    }


def _percentile(ordered: list[float], pct: float) -> float:
    """Nearest rank of an already sorted list."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


# Measurement helpers (parent) ----------------------------------------------------------------------


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds of all live threads of ``pid`` (Linux /proc schedstat); NaN where unavailable."""
    if pid is None:
        return math.nan
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return math.nan
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


class Lines:
    """JSON lines from a child's stdout."""

    def __init__(self, process: Process) -> None:
        assert process.stdout is not None
        self._stream = BufferedByteReceiveStream(process.stdout)

    async def next(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109 (a deadline per line read)
        with anyio.fail_after(timeout):
            while True:
                line = await self._stream.receive_until(b"\n", 1 << 20)
                try:
                    answer: dict[str, Any] = json.loads(line)
                    return answer
                except json.JSONDecodeError:
                    continue  # not ours (a library printing to stdout)


@dataclass
class Targets:
    """The health-target processes; the first also owns the victim listeners."""

    processes: list[Process]
    lines: list[Lines]
    http_port: int
    grpc_port: int
    victim_ports: dict[str, list[int]]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def cpu_s(self) -> float:
        return sum(process_cpu_s(pid) for pid in self.pids)

    async def command(self, cmd: str, kind: str = "") -> list[dict[str, Any]]:
        """Send ``cmd`` to every target process (stop/start: the victims of ``kind``); their answers."""
        for process in self.processes:
            assert process.stdin is not None
            await process.stdin.send((json.dumps({"cmd": cmd, "kind": kind}) + "\n").encode())
        return [await reader.next(30) for reader in self.lines]

    async def victims(self, cmd: str, kind: str) -> float:
        """Stop or start the victims of ``kind``; the monotonic time at which it was done."""
        return float((await self.command(cmd, kind))[0]["t"])

    async def connections(self, kind: str) -> int:
        """HTTP connections accepted, or gRPC (service, peer) pairs seen since the last reset."""
        return sum(int(reply[kind]) for reply in await self.command("count"))


@contextlib.asynccontextmanager
async def start_targets(count: int, victims: int, log: Path) -> AsyncIterator[Targets]:
    http_port, grpc_port, *victim_ports = free_ports(2 + 2 * victims)
    ports = {"http": victim_ports[:victims], "grpc": victim_ports[victims:]}
    processes: list[Process] = []
    try:
        with log.open("ab") as err:
            for i in range(count):
                cmd = [
                    sys.executable,
                    str(TARGETS_SCRIPT),
                    f"--http-port={http_port}",
                    f"--grpc-port={grpc_port}",
                ]
                if i == 0:
                    cmd += [
                        f"--victim-http-ports={','.join(map(str, ports['http']))}",
                        f"--victim-grpc-ports={','.join(map(str, ports['grpc']))}",
                    ]
                processes.append(await anyio.open_process(cmd, stderr=err))
        lines = [Lines(p) for p in processes]
        for reader in lines:
            await reader.next(30)  # ready
        yield Targets(processes, lines, http_port, grpc_port, ports)
    finally:
        with anyio.CancelScope(shield=True):
            for p in processes:
                await _terminate(p, 10)


async def _terminate(process: Process, timeout: float) -> int | None:  # noqa: ASYNC109 (SIGTERM, then SIGKILL)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        with anyio.move_on_after(timeout):
            return await process.wait()
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        return await process.wait()
    return process.returncode


# Phases --------------------------------------------------------------------------------------------


@dataclass
class Phase:
    kind: str
    n: int
    prober: str  # "ours" or "naive"
    error: str | None = None
    loaded_s: float = math.nan  # hub start to N loops running
    settle_s: float = math.nan  # hub start to steady state (see settle())
    settled: bool = False
    seconds: float = math.nan  # measured window
    checks: int = 0
    hub_cpu: float = math.nan  # CPU seconds in the window, all threads
    loop_cpu: float = math.nan  # of which the event-loop thread
    failed: int = 0
    last_failure: str = ""
    late: dict[str, float] = field(default_factory=dict)
    gc: dict[str, float] = field(default_factory=dict)  # GC pauses in the window (GcWatch.summary)
    conns: int = 0  # new connections the targets saw in the window
    targets_cpu: float = math.nan
    etcd_cpu: float = math.nan
    rss_mb: float = math.nan
    fds: int = 0
    new_terms: int = 0  # leadership terms started during the window (the lease was lost)
    detect: list[float] = field(default_factory=list)  # seconds from stop to critical in etcd, per victim
    undetected: int = 0

    @property
    def expected_rate(self) -> float:
        return self.n / INTERVAL

    @property
    def rate(self) -> float:
        return self.checks / self.seconds if self.seconds > 0 else math.nan

    @property
    def cores(self) -> float:
        return self.hub_cpu / self.seconds if self.seconds > 0 else math.nan

    @property
    def cores_per_1k(self) -> float:
        """Hub CPU seconds per second, per 1,000 checks/s (= ms of CPU per check)."""
        return self.cores / (self.rate / 1000) if self.rate > 0 else math.nan

    @property
    def p99(self) -> float:
        return self.late.get("p99", math.nan)

    def holds(self) -> bool:
        return (
            self.error is None
            and self.rate >= RATE_OK * self.expected_rate
            and self.cores < AIM_CORES
            and self.p99 < AIM_P99
            and self.failed == 0
            and self.new_terms == 0
        )


class Bench:
    def __init__(self, args: argparse.Namespace, etcd: EmbeddedEtcd, client: EtcdClient, targets: Targets, tmp: Path):
        self.args = args
        self.etcd = etcd
        self.client = client
        self.targets = targets
        self.tmp = tmp
        self.phases: list[Phase] = []
        self.header_printed = False

    def port(self, kind: str) -> int:
        return self.targets.http_port if kind == "http" else self.targets.grpc_port

    async def prepare(self, kind: ServiceType, n: int) -> RegistryKeys:
        keys = RegistryKeys(root=f"bench/{kind}-{n}/")
        regs = build_registrations(kind, n, self.port(kind), self.targets.victim_ports[kind])
        t0 = time.monotonic()
        await register(self.client, keys, regs)
        note(f"{kind} N={n}: registered {len(regs)} instances in {time.monotonic() - t0:.1f} s")
        return keys

    async def cleanup(self, keys: RegistryKeys) -> None:
        await self.client.delete(keys.root.encode(), prefix_end(keys.root))

    async def phase(self, kind: str, n: int, prober: str, keys: RegistryKeys, *, detect: bool = True) -> Phase:
        result = Phase(kind, n, prober)
        note(f"{kind} N={n} {prober}: starting the hub")
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            f"--endpoint={self.etcd.client_url}",
            f"--root={keys.root}",
            f"--kind={kind}",
            f"--n={n}",
            f"--prober={prober}",
            f"--duration={self.args.duration}",
            f"--settle-margin={self.args.settle_margin}",
            *(["--timeline"] if self.args.timeline else []),
        ]
        await self.targets.command("reset")
        with (self.tmp / f"hub-{kind}-{n}-{prober}.log").open("ab") as err:
            process = await anyio.open_process(cmd, stderr=err)
        try:
            lines = Lines(process)
            loaded = await lines.next(120)
            result.loaded_s = loaded["seconds"]
            settled = await lines.next(warmup(kind, n) + self.args.settle_margin + 60)
            result.settle_s, result.settled = settled["seconds"], settled["settled"]
            await lines.next(30)  # window-start
            cpu0 = self.targets.cpu_s(), process_cpu_s(self.etcd.pid), await self.targets.connections(kind)
            spy = self._py_spy(process.pid, kind, n) if prober == "ours" else None
            end = await lines.next(self.args.duration + 60)
            cpu1 = self.targets.cpu_s(), process_cpu_s(self.etcd.pid), await self.targets.connections(kind)
            if spy is not None:
                await anyio.to_thread.run_sync(spy.wait)
            result.seconds = end["seconds"]
            result.checks, result.new_terms = end["checks"], end["new_terms"]
            result.hub_cpu, result.loop_cpu = end["cpu"], end["loop_cpu"]
            result.failed, result.last_failure = end["failed"], end["last_failure"]
            result.late, result.gc = end["lateness"], end["gc"]
            result.rss_mb, result.fds = end["rss_mb"], end["fds"]
            result.targets_cpu, result.etcd_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
            result.conns = cpu1[2] - cpu0[2]
            if detect and result.rate >= 0.5 * result.expected_rate and not result.new_terms:
                await self._detect(kind, keys, result)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            note(f"{kind} N={n} {prober} FAILED: {result.error}")
            traceback.print_exception(exc, file=sys.stderr)
        finally:
            with anyio.CancelScope(shield=True):
                t0 = time.monotonic()
                code = await _terminate(process, 30)
                note(f"{kind} N={n} {prober}: hub stopped in {time.monotonic() - t0:.1f} s (exit {code})")
                if detect:
                    await self.targets.victims("start", kind)
        self.phases.append(result)
        print_row(result, self)
        return result

    def _py_spy(self, pid: int, kind: str, n: int) -> subprocess.Popen[bytes] | None:
        if self.args.py_spy is None:
            return None
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out = self.args.py_spy / f"{kind}-{n}-ours"
        duration = str(max(1, int(self.args.duration) - 1))
        common = ["--pid", str(pid), "--duration", duration, "--rate", "200", "--nonblocking"]
        return subprocess.Popen(
            [exe, "record", *common, "--format", "raw", "--output", f"{out}.txt"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def _detect(self, kind: str, keys: RegistryKeys, result: Phase) -> None:
        """Stop the victims; seconds until etcd holds each one's status as critical."""
        prefix = f"{keys.statuses}{WIRE_TYPES[kind]}/{VICTIM_NAME}/"  # type: ignore[index]
        victims = len(self.targets.victim_ports[kind])
        deadline = time.monotonic() + 2 * INTERVAL
        while True:  # the victims must be passing first (their first check runs within the warm-up)
            page = await self.client.range(prefix, prefix_end(prefix))
            passing = sum(1 for kv in page.kvs if json.loads(kv.value).get("status") == "passing")
            if passing == victims or time.monotonic() > deadline:
                break
            await anyio.sleep(0.2)
        seen: dict[bytes, float] = {}
        done = anyio.Event()

        async def watch() -> None:
            async for batch in self.client.watch(prefix, prefix_end(prefix), start_revision=page.revision + 1):
                now = time.monotonic()
                for event in batch.events:
                    if event.type == "put" and json.loads(event.kv.value).get("status") == "critical":
                        seen.setdefault(event.kv.key, now)
                if len(seen) >= victims:
                    done.set()
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            stopped = await self.targets.victims("stop", kind)
            with anyio.move_on_after(INTERVAL * 2 + 5):
                await done.wait()
            tg.cancel_scope.cancel()
        result.detect = sorted(t - stopped for t in seen.values())
        result.undetected = victims - len(seen)


# Report ------------------------------------------------------------------------------------------


COLUMNS = (
    f"{'kind':<5}{'N':>7} {'hub':<6}{'checks/s':>9}{'of sched':>9}{'hub cores':>10}{'cores/1k/s':>11}"
    f"{'p50 late':>9}{'p99 late':>9}{'max late':>9}{'failed':>7}{'lost':>5}{'conns/s':>8}{'detect s':>14}"
    f"{'ready s':>8}{'targets':>8}{'etcd':>6}{'RSS MB':>7}{'fds':>6}"
)


def print_header(args: argparse.Namespace) -> None:
    print()
    print(
        f"hub scale: interval {INTERVAL:g} s, timeout {TIMEOUT:g} s, window {args.duration:g} s after the warm-up, "
        f"{args.targets} target process(es), {args.victims} victims, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
        f"open files {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
    )
    print(
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine shows here)"
    )
    print("ours: HubRunner as shipped (shared aiohttp session, gRPC channel kept per instance)")
    print("naive: the same Hub loops with a new aiohttp ClientSession / gRPC channel per check")
    print("of sched: checks/s / (N / interval); hub cores: hub process CPU s per s, all threads;")
    print("cores/1k/s: hub cores per 1,000 checks/s (= ms of hub CPU per check); late: check start - its slot, ms")
    print("  (a loop more than an interval behind skips its missed slots: that shows in 'of sched', not in 'late');")
    print("failed: checks not passing in the window; lost: leadership lost (lease expired) in the window;")
    print("conns/s: new connections the targets saw (gRPC: new (service, peer) pairs, a service per instance);")
    print("detect s: victim stopped -> status critical in etcd (failures_before_critical=1), median/max")
    print("  ('-': not measured, the hub kept up with less than half the schedule or lost its lease);")
    print("ready s: hub start to steady state (every instance checked once, no status write queued, event loop")
    rates = ", ".join(f"{kind} {rate}/s" for kind, rate in FIRST_CHECKS_PER_SECOND.items())
    print(f"  on time for 1 s; not before the warm-up: max({INTERVAL:g} s, N / rate ({rates})), the spread")
    print(f"  of the first checks, + 1 s); '!': not within {args.settle_margin:g} s past the warm-up, measured anyway;")
    print("targets, etcd: cores used by the target processes and etcd in the window")
    print(COLUMNS)
    print("-" * len(COLUMNS))
    sys.stdout.flush()


def _f(value: float, fmt: str, width: int) -> str:
    return (
        f"{'-':>{width}}"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:>{width}{fmt}}"
    )


def print_row(p: Phase, bench: Bench) -> None:
    if not bench.header_printed:
        print_header(bench.args)
        bench.header_printed = True
    if p.error is not None:
        print(f"{p.kind:<5}{p.n:>7} {p.prober:<6} FAILED: {p.error.splitlines()[0]} (details on stderr)")
        sys.stdout.flush()
        return
    if p.detect:
        detect = f"{_percentile(p.detect, 50):.2f}/{p.detect[-1]:.2f}"
        if p.undetected:
            detect += f"+{p.undetected}?"
    elif p.undetected:
        detect = f"none of {p.undetected}"
    else:
        detect = "-"
    per_s = p.seconds if p.seconds > 0 else math.nan
    print(
        f"{p.kind:<5}{p.n:>7} {p.prober:<6}{_f(p.rate, '.0f', 9)}{_f(p.rate / p.expected_rate, '.3f', 9)}"
        f"{_f(p.cores, '.3f', 10)}{_f(p.cores_per_1k, '.3f', 11)}"
        f"{_f(p.late.get('p50', math.nan) * 1e3, '.1f', 9)}{_f(p.p99 * 1e3, '.1f', 9)}"
        f"{_f(p.late.get('max', math.nan) * 1e3, '.0f', 9)}{p.failed:>7}{p.new_terms:>5}"
        f"{_f(p.conns / per_s, '.0f', 8)}{detect:>14}"
        f"{_f(p.settle_s, '.1f', 7)}{' ' if p.settled else '!'}{_f(p.targets_cpu / per_s, '.2f', 8)}"
        f"{_f(p.etcd_cpu / per_s, '.2f', 6)}{_f(p.rss_mb, '.0f', 7)}{p.fds:>6}"
    )
    if p.failed:
        print(f"      (last failed check: {p.last_failure[:160]})")
    sys.stdout.flush()


def report(bench: Bench) -> None:
    phases = [p for p in bench.phases if p.error is None]
    pairs = [
        (o, nv)
        for o in phases
        if o.prober == "ours"
        for nv in phases
        if nv.prober == "naive" and nv.kind == o.kind and nv.n == o.n
    ]
    if pairs:
        print()
        print("naive / ours, same run:")
        for ours, naive in pairs:
            print(
                f"  {ours.kind:<5}{ours.n:>7}: hub CPU per check {naive.cores_per_1k / ours.cores_per_1k:5.1f}x, "
                f"hub cores {naive.cores:.2f} vs {ours.cores:.2f}, p99 lateness {naive.p99 * 1e3:.1f} vs "
                f"{ours.p99 * 1e3:.1f} ms, checks/s {naive.rate:.0f} vs {ours.rate:.0f}, "
                f"conns/s {naive.conns / naive.seconds:.0f} vs {ours.conns / ours.seconds:.0f}"
            )
    print()
    print(
        f"aim: {AIM_N:,} instances at a {INTERVAL:g} s interval ({AIM_N / INTERVAL:,.0f} checks/s) "
        f"with the hub under {AIM_CORES} core and p99 lateness under {AIM_P99 * 1e3:.0f} ms"
    )
    spied = " (under py-spy)" if bench.args.py_spy else ""
    for kind in sorted({p.kind for p in bench.phases}):
        ours = [p for p in bench.phases if p.kind == kind and p.prober == "ours" and p.error is None]
        aim = max(ours, key=lambda p: p.n, default=None)
        if aim is None:
            verdict(f"{kind} hub at {AIM_N:,} instances", "n/a (failed)", "-", "-", False)
            continue
        print(
            f"  {kind:<5} ours   N={aim.n:,}: {aim.rate:,.0f} checks/s "
            f"({aim.rate / aim.expected_rate:.1%} of schedule), "
            f"hub {aim.cores:.3f} cores ({aim.loop_cpu / aim.seconds:.3f} in the event-loop thread), "
            f"p99 lateness {aim.p99 * 1e3:.1f} ms, {aim.failed} failed, {aim.new_terms} leases lost, "
            f"longest GC pause {aim.gc.get('max', math.nan) * 1e3:.0f} ms"
        )
        # The baseline of the same run: HTTP's hub at the same N, per check (a hub that falls behind
        # uses fewer cores for fewer checks); for HTTP the aim's half core itself.
        http = next((p for p in bench.phases if p.kind == "http" and p.prober == "ours" and p.n == aim.n), None)
        at = "" if aim.n == AIM_N else f" (run at N={aim.n:,}: no verdict)"
        measured = f"{aim.cores:.3f} cores, p99 {aim.p99 * 1e3:.0f} ms, {aim.rate / aim.expected_rate:.0%} of sched"
        if kind != "http" and http is not None and http.error is None:
            measured += f", {aim.cores_per_1k:.3f} ms CPU/check"
            baseline = f"http {http.cores_per_1k:.3f} ms CPU/check ({http.cores:.3f} cores)"
            ratio = ratio_text(aim.cores_per_1k, http.cores_per_1k)
        else:
            baseline, ratio = f"aim {AIM_CORES} core", ratio_text(aim.cores, AIM_CORES)
        verdict(
            f"{kind} hub at {AIM_N:,} instances / {INTERVAL:g} s: <= {AIM_CORES} core, "
            f"p99 late < {AIM_P99 * 1e3:.0f} ms{at}{spied}",
            measured,
            baseline,
            ratio,
            aim.holds() if aim.n == AIM_N else None,
        )


# Find max ----------------------------------------------------------------------------------------


def fd_ceiling() -> int:
    """The largest N one hub process can hold open connections for under the open-file limit."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(1000, soft - FD_RESERVE) if soft != resource.RLIM_INFINITY else 1_000_000


async def find_max(bench: Bench, kind: ServiceType, deadline: float) -> None:
    ceiling = fd_ceiling()
    held = [p.n for p in bench.phases if p.kind == kind and p.prober == "ours" and p.holds()]
    missed = [p.n for p in bench.phases if p.kind == kind and p.prober == "ours" and not p.holds()]
    good = max(held, default=0)
    bad = min((n for n in missed if n > good), default=0)
    n = (good + bad) // 2 if bad else min(max(good * 2, 1000), ceiling)
    tried: list[tuple[int, bool]] = []
    while time.monotonic() < deadline and n > good and (not bad or bad - good > max(500, good // 10)):
        keys = await bench.prepare(kind, n)
        try:
            p = await bench.phase(kind, n, "ours", keys, detect=False)
        finally:
            await bench.cleanup(keys)
        tried.append((n, p.holds()))
        if p.holds():
            good = n
            if n >= ceiling:
                break
            n = (good + bad) // 2 if bad else min(n * 2, ceiling)
        else:
            bad = n
            n = (good + bad) // 2
    print()
    print(f"largest N held, {kind} (ours): {good or 'none'}", end="")
    if good >= ceiling:
        print(f"  (the open-file limit: {ceiling} + {FD_RESERVE} descriptors; one connection per instance)")
    elif bad:
        print(f"  (missed at {bad})")
    else:
        print("  (stopped by the time bound)")
    steps = ", ".join(f"{n} {'held' if ok else 'missed'}" for n, ok in tried)
    print(f"  tried: {steps or 'nothing'}")


# Main --------------------------------------------------------------------------------------------


def note(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> Bench:
    kinds: list[ServiceType] = ["http", "grpc"] if args.kind == "both" else [args.kind]
    with tempfile.TemporaryDirectory(prefix="kk-hub-bench-") as tmp_name:
        tmp = Path(tmp_name)
        client_port, peer_port = free_ports(2)
        etcd = EmbeddedEtcd(tmp / "etcd", client_port, peer_port, log_file=tmp / "etcd.log")
        note(f"starting etcd at {etcd.client_url} and {args.targets} target process(es)")
        await etcd.astart()
        bench: Bench | None = None
        try:
            async with (
                EtcdClient([etcd.client_url]) as client,
                start_targets(args.targets, args.victims, tmp / "targets.log") as targets,
            ):
                bench = Bench(args, etcd, client, targets, tmp)
                for kind in kinds:
                    for n in args.n:
                        keys = await bench.prepare(kind, n)
                        try:
                            for prober in ("ours",) if args.no_naive else ("ours", "naive"):
                                await bench.phase(kind, n, prober, keys)
                        finally:
                            await bench.cleanup(keys)
                report(bench)
                if args.find_max:
                    deadline = time.monotonic() + args.find_max_minutes * 60
                    for kind in kinds:
                        share = (deadline - time.monotonic()) / (len(kinds) - kinds.index(kind))
                        await find_max(bench, kind, time.monotonic() + share)
        finally:
            if args.keep_logs:
                for log in tmp.glob("*.log"):
                    shutil.copy(log, args.keep_logs / log.name)
            await etcd.astop()
    assert bench is not None
    return bench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000], help="instance counts (default 1000 10000)")
    parser.add_argument("--kind", choices=["http", "grpc", "both"], default="both")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase (default 10)")
    parser.add_argument("--targets", type=int, default=2, help="health-target processes (default 2)")
    parser.add_argument("--victims", type=int, default=4, help="instances stopped to time detection (default 4)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive hub")
    parser.add_argument("--find-max", action="store_true", help="then find the largest N ours holds")
    parser.add_argument("--find-max-minutes", type=float, default=6.0, help="time bound of --find-max (default 6)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=1000, ours only, 3 s windows (about 40 s)")
    parser.add_argument(
        "--settle-margin",
        type=float,
        default=10.0,
        help="give up waiting for a steady state this many s after the warm-up (default 10)",
    )
    parser.add_argument("--py-spy", type=Path, help="py-spy each 'ours' hub's window into this directory")
    parser.add_argument("--keep-logs", type=Path, help="copy the etcd, target and hub logs here")
    parser.add_argument(
        "--timeline", action="store_true", help="hub logs show CPU, checks, loop lag, writes each second"
    )
    # The hub child process (internal).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--prober", choices=["ours", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.n = args.n[0] if isinstance(args.n, list) else args.n
        anyio.run(hub_child, args, backend="asyncio")
        return 0
    if args.quick:
        args.n, args.duration, args.no_naive = [1000], 3.0, True
    if any(n <= args.victims for n in args.n) or args.duration <= 0:
        parser.error(f"every --n must exceed --victims ({args.victims}) and --duration must be positive")
    for path in (args.py_spy, args.keep_logs):
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    bench = anyio.run(run, args, backend="asyncio")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n(total run time {time.perf_counter() - started:.1f} s; load average at the end: {load})")
    return 1 if any(p.error is not None for p in bench.phases) else 0


if __name__ == "__main__":
    sys.exit(main())
