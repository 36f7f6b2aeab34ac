"""Latency of kv_get / kv_put through MCP, next to the baselines that bound it (issue 2, section 8).

    python bench/kv_latency.py [--calls 500] [--warmup 50] [--rounds 5] [--value text|json|yaml] [--breakdown]
    python bench/kv_latency.py --quick      # 100 calls per case after 20 warm-up, 2 rounds, --breakdown: ~25 s

One run starts its own etcd (embedded, free loopback ports, temp data dir) and measures, each as
sequential calls from one client after a warm-up (all sessions stay open; the calls of every case are
split into interleaved rounds so that load elsewhere on the machine hits every case alike):

* direct:  etcd3aio's ``Etcd3Client.kv.get`` / ``put`` (reference) and our ``EtcdClient.get`` / ``put``;
* floor:   a no-op tool on a bare MCPServer (bench/noop_server.py) over stdio and over streamable HTTP;
* kv:      ``kv_get`` and ``kv_put`` through the real ``kk-etcd-mcp serve`` over stdio and streamable HTTP.

It prints p50, p95 and calls/s per case, p50 as a multiple of the no-op floor on the same transport
and of the direct EtcdClient call, the CPU time per call of the client (this process), the server and
etcd (Linux /proc; "-" elsewhere), and the aims as ``verdict:`` lines (bench/verdicts.py): kv_get p50
<= 1.5x the floor per transport, and the server CPU kv_get adds over the no-op on streamable HTTP <=
1.3x what it adds on stdio. The verdicts are informational: the exit code is 0 unless a case failed.

The kk-etcd-mcp servers run with every setting at its default except ``http_rate_limit`` (0): one
client's sequential calls exceed the default 20 per second, and the limiter would refuse them (429).

``--breakdown`` adds the steps between the floor and kv_get (bench/noop_server.py serving kv_get's
signature and result model without etcd, and on stdio also through our own stdin reader) and prints
kv_get's p50 and server CPU split into those steps; over streamable HTTP also kv_get on kk-etcd-mcp
with mcp's app alone, without our HTTP middleware (bench/kk_plain_http.py), to show what it costs.
Beside them, the bare MCPServer's kv_get shape after a 1 ms pause without I/O, and reading the key
with our EtcdClient: what a call that waits costs each transport whoever serves it, with INFO verdicts
comparing HTTP and stdio for each, and the two HTTP aims applied to that bare server's read (what mcp's
transport reaches on this machine without kk-etcd-mcp).

``--profile DIR`` runs the kk-etcd-mcp servers under cProfile and leaves ``kk-<transport>.prof`` in DIR
(read with ``python -m pstats``); ``--profiler pyinstrument`` (if installed) leaves ``.pyisession`` files
instead (``pyinstrument --load FILE``). Latencies measured so are inflated: the verdict is then void.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx2
from etcd3aio.client import Etcd3Client
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from verdicts import ratio_text, verdict  # bench/ is sys.path[0] when a bench script runs

from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, accepts_connections, free_port, free_ports

BENCH_DIR = Path(__file__).resolve().parent
NOOP_SERVER = BENCH_DIR / "noop_server.py"
FLOOR = "noop (floor)"
KK_STDIO_NOOP = "noop, our stdin"
SHAPE = "kv_get, no etcd"
PAUSED = "kv_get, 1 ms pause"  # the shape after an asyncio.sleep: a pause with no I/O (noop_server.py)
BARE = "kv_get, bare server"  # the shape reading etcd with our EtcdClient, on the bare MCPServer
NO_MIDDLEWARE = "kv_get, mcp's app"  # kk-etcd-mcp over HTTP without our middleware (bench/kk_plain_http.py)
CHUNK_TIMEOUT = 60.0  # seconds (plus 0.1 s per call) before a hung case is given up
TARGET_RATIO = 1.5  # kv_get p50 at most 1.5x the no-op floor on each transport
HTTP_EXTRA_CPU_RATIO = 1.3  # the server CPU kv_get adds over the no-op: HTTP at most 1.3x stdio's
# Settings the bench needs, named here rather than left to the defaults: the rate limiter would refuse
# one client's back-to-back calls (20/s by default). Every other limit stays at its default.
KK_SETTINGS = {"http_rate_limit": "0"}

GET_KEY = "bench/app/db"
PUT_KEY = "bench/app/put"
VALUES = {
    "text": "postgres://app@db.internal/app?sslmode=require",
    "json": '{"host": "db.internal", "port": 5432, "pool": {"min": 2, "max": 20}, "tags": ["a", "b"]}',
    "yaml": "host: db.internal\nport: 5432\npool:\n  min: 2\n  max: 20\ntags:\n  - a\n  - b\n",
}


# Measurement -------------------------------------------------------------------------------------


@dataclass
class Result:
    group: str  # "direct", "stdio", "http"
    name: str
    call: Callable[[], Awaitable[Any]] | None = None
    samples: list[float] = field(default_factory=list)  # seconds per call
    wall: float = 0.0  # seconds for all measured calls
    error: str | None = None
    server_pid: int | None = None  # the MCP server process, for its CPU time
    cpu_ns: dict[str, int] = field(default_factory=dict)  # "client"/"server"/"etcd": CPU over the measured calls

    def cpu_per_call(self, who: str) -> float:
        """Microseconds of CPU (all threads) that ``who`` spent per measured call; NaN if unknown."""
        if who not in self.cpu_ns or not self.samples:
            return math.nan
        return self.cpu_ns[who] / len(self.samples) / 1e3

    @property
    def p50(self) -> float:
        return _percentile(self.samples, 50)

    @property
    def p95(self) -> float:
        return _percentile(self.samples, 95)

    @property
    def rate(self) -> float:
        return len(self.samples) / self.wall if self.wall else math.nan


def process_cpu_ns(pid: int | None) -> int | None:
    """CPU time in ns of all live threads of ``pid`` (Linux /proc schedstat), or None where unavailable."""
    if pid is None:
        return None
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total


def child_pids() -> set[int]:
    """Our direct child processes (Linux), to find the server the stdio client spawned."""
    pids: set[int] = set()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except (OSError, ValueError):
            continue
    return pids


def _percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


class Bench:
    """Cases are measured in interleaved rounds, so a burst of load elsewhere on the machine hits them all alike."""

    def __init__(self, calls: int, warmup: int, rounds: int) -> None:
        self.calls = calls
        self.warmup = warmup
        self.rounds = max(1, min(rounds, calls))
        self.results: list[Result] = []
        self.etcd_pid: int | None = None

    def add(self, group: str, name: str, call: Callable[[], Awaitable[Any]], server_pid: int | None = None) -> None:
        self.results.append(Result(group, name, call, server_pid=server_pid))

    def _cpu(self, result: Result) -> dict[str, int | None]:
        return {
            "client": time.process_time_ns(),
            "server": process_cpu_ns(result.server_pid),
            "etcd": process_cpu_ns(self.etcd_pid),
        }

    def failed(self, group: str, name: str, exc: BaseException) -> None:
        """A case (or the server behind it) could not run: it shows as FAILED in the table."""
        self.results.append(Result(group, name, error=f"{type(exc).__name__}: {exc}"))
        _fail_note(group, name, exc)

    async def _run(self, result: Result, calls: int, keep: bool) -> None:
        assert result.call is not None
        call, perf, samples = result.call, time.perf_counter, result.samples
        try:
            cpu_before = self._cpu(result)
            start = perf()
            with anyio.fail_after(CHUNK_TIMEOUT + calls * 0.1):  # one scope per chunk: nothing added per call
                for _ in range(calls):
                    t0 = perf()
                    await call()
                    if keep:
                        samples.append(perf() - t0)
            if keep:
                result.wall += perf() - start
                for who, after in self._cpu(result).items():
                    before = cpu_before[who]
                    if before is not None and after is not None:
                        result.cpu_ns[who] = result.cpu_ns.get(who, 0) + after - before
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            _fail_note(result.group, result.name, exc)

    async def measure(self) -> None:
        live = [r for r in self.results if r.error is None]
        for r in live:
            await self._run(r, self.warmup, keep=False)
        chunks = [self.calls // self.rounds + (1 if i < self.calls % self.rounds else 0) for i in range(self.rounds)]
        for i, chunk in enumerate(chunks, 1):
            print(f"  round {i}/{len(chunks)}: {chunk} calls per case", file=sys.stderr)
            for r in live:
                if r.error is None:
                    await self._run(r, chunk, keep=True)

    def get(self, group: str, name: str) -> Result | None:
        for r in self.results:
            if r.group == group and r.name == name and r.error is None and r.samples:
                return r
        return None


def _fail_note(group: str, name: str, exc: BaseException) -> None:
    print(f"  {group} {name} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)


# Servers -----------------------------------------------------------------------------------------


def server_env(endpoint: str, **settings: str) -> dict[str, str]:
    """Our environment minus any KK_ETCD_* leaking in, plus the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KK_ETCD_")}
    env["KK_ETCD_ENDPOINTS"] = endpoint
    for name, value in settings.items():
        env[f"KK_ETCD_{name.upper()}"] = value
    return env


def kk_command(profile_dir: Path | None, profiler: str, tag: str) -> list[str]:
    serve = ["-m", "kk_etcd_mcp", "serve"]
    if profile_dir is None:
        return [sys.executable, *serve]
    if profiler == "pyinstrument":  # not a dependency of ours: pip install pyinstrument to use it
        out = profile_dir / f"kk-{tag}.pyisession"
        return [sys.executable, "-m", "pyinstrument", "-r", "session", "-o", str(out), *serve]
    out = profile_dir / f"kk-{tag}.prof"
    return [sys.executable, str(BENCH_DIR / "profiled.py"), str(out), "serve"]  # also written on os._exit


@dataclass
class Session:
    client: Client
    pid: int | None  # the server process (None if it could not be found)


@asynccontextmanager
async def stdio_session(command: list[str], env: dict[str, str] | None, errlog: TextIO) -> AsyncIterator[Session]:
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    before = child_pids()
    async with Client(stdio_client(params, errlog=errlog)) as client:
        new = child_pids() - before
        yield Session(client, new.pop() if len(new) == 1 else None)


async def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    timeout = 30.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}; its log:\n{_tail(log)}")
        if accepts_connections("127.0.0.1", port, timeout=0.2):
            return
        await anyio.sleep(0.05)
    raise TimeoutError(f"server did not listen on port {port} within {timeout:g}s; its log:\n{_tail(log)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def _process(command: list[str], env: dict[str, str] | None, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()  # SIGTERM: both servers shut down cleanly (and cProfile writes its file)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def http_session(command: list[str], env: dict[str, str] | None, port: int, log: Path) -> AsyncIterator[Session]:
    with _process(command, env, log) as process:
        await _wait_for_port(port, process, log)
        url = f"http://127.0.0.1:{port}/mcp"
        async with (
            httpx2.AsyncClient(timeout=30, trust_env=False) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            yield Session(client, process.pid)


# Cases -------------------------------------------------------------------------------------------


def tool_call(client: Client, name: str, arguments: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        result = await client.call_tool(name, arguments)
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            raise RuntimeError(f"{name} failed: {text}")
        return result

    return call


async def open_direct(stack: AsyncExitStack, bench: Bench, etcd: EmbeddedEtcd, value: str) -> None:
    raw = Etcd3Client(endpoints=[f"{etcd.host}:{etcd.client_port}"])
    await raw.connect()
    stack.push_async_callback(raw.close)
    kv = raw.kv
    assert kv is not None
    key, put_key, data = GET_KEY.encode(), PUT_KEY.encode(), value.encode()
    bench.add("direct", "etcd3aio kv.get", lambda: kv.get(key, timeout=5))
    bench.add("direct", "etcd3aio kv.put", lambda: kv.put(put_key, data, prev_kv=True, timeout=5))
    client = await stack.enter_async_context(EtcdClient([etcd.client_url]))
    bench.add("direct", "EtcdClient.get", lambda: client.get(GET_KEY))
    # prev_kv=True: what ConfigCenter.put asks for (it reports created / previous_mod_revision)
    bench.add("direct", "EtcdClient.put", lambda: client.put(PUT_KEY, value, prev_kv=True))


def _server_session(
    stack: AsyncExitStack, tmp: Path, name: str, group: str, command: list[str], env: dict[str, str] | None
) -> contextlib.AbstractAsyncContextManager[Session]:
    """A session with ``command`` (stdio) or ``command --port P`` (HTTP), its output going to a log in tmp."""
    log = tmp / f"{name}-{group}.log"
    if group == "stdio":
        return stdio_session(command, env, stack.enter_context(log.open("w")))
    port = free_port()
    if env is None:
        command = [*command, "--port", str(port)]
    else:
        env = {**env, "KK_ETCD_PORT": str(port)}
    return http_session(command, env, port, log)


async def open_mcp(
    stack: AsyncExitStack, bench: Bench, tmp: Path, endpoint: str, args: argparse.Namespace, group: str
) -> None:
    """The no-op floor and the real server on one transport: their sessions stay open until the end."""
    profile_dir: Path | None = args.profile.resolve() if args.profile else None
    get_args = {"key": GET_KEY}
    put_args = {"key": PUT_KEY, "value": VALUES[args.value], "format": args.value}
    noop_cmd = [sys.executable, str(NOOP_SERVER), "stdio" if group == "stdio" else "http"]
    try:
        noop = await stack.enter_async_context(_server_session(stack, tmp, "noop", group, noop_cmd, None))
        bench.add(group, FLOOR, tool_call(noop.client, "noop", {}), noop.pid)
    except Exception as exc:
        bench.failed(group, FLOOR, exc)

    # On stdio kk-etcd-mcp reads stdin with its own reader, cheaper than mcp's (threads): the no-op served
    # through it is kv_get's like-for-like floor there. With --breakdown, kv_get's schema and result model
    # without etcd too. Served by noop_server.py, which then imports those parts of kk_etcd_mcp.
    kk_stdio = group == "stdio"
    if kk_stdio or args.breakdown:
        extra = [*(["--kk-stdio"] if kk_stdio else []), *(["--shape", "--etcd", endpoint] if args.breakdown else [])]
        try:
            shape = await stack.enter_async_context(
                _server_session(stack, tmp, "shape", group, [*noop_cmd, *extra], None)
            )
            if kk_stdio:
                bench.add(group, KK_STDIO_NOOP, tool_call(shape.client, "noop", {}), shape.pid)
            if args.breakdown:
                bench.add(group, SHAPE, tool_call(shape.client, "kv_get_shape", get_args), shape.pid)
                bench.add(group, PAUSED, tool_call(shape.client, "kv_get_paused", get_args), shape.pid)
                bench.add(group, BARE, tool_call(shape.client, "kv_get_bare", get_args), shape.pid)
        except Exception as exc:
            bench.failed(group, SHAPE if args.breakdown else KK_STDIO_NOOP, exc)

    env = server_env(endpoint, transport="stdio" if group == "stdio" else "streamable-http", **KK_SETTINGS)
    try:
        kk_cmd = kk_command(profile_dir, args.profiler, group)
        kk = await stack.enter_async_context(_server_session(stack, tmp, "kk", group, kk_cmd, env))
        bench.add(group, "kv_get", tool_call(kk.client, "kv_get", get_args), kk.pid)
        bench.add(group, "kv_put", tool_call(kk.client, "kv_put", put_args), kk.pid)
    except Exception as exc:
        bench.failed(group, "kv_get", exc)
        bench.failed(group, "kv_put", exc)

    if args.breakdown and group == "http":
        try:
            plain_cmd = [sys.executable, str(BENCH_DIR / "kk_plain_http.py"), "serve"]
            plain = await stack.enter_async_context(_server_session(stack, tmp, "plain", group, plain_cmd, env))
            bench.add(group, NO_MIDDLEWARE, tool_call(plain.client, "kv_get", get_args), plain.pid)
        except Exception as exc:
            bench.failed(group, NO_MIDDLEWARE, exc)


async def run(args: argparse.Namespace) -> Bench:
    bench = Bench(args.calls, args.warmup, args.rounds)
    value = VALUES[args.value]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kk-bench-") as tmp_name:
        tmp = Path(tmp_name)
        client_port, peer_port = free_ports(2)
        etcd = EmbeddedEtcd(tmp / "etcd", client_port, peer_port, log_file=tmp / "etcd.log")
        print(f"starting etcd at {etcd.client_url} ...", file=sys.stderr)
        await etcd.astart()
        bench.etcd_pid = etcd.pid
        try:
            async with EtcdClient([etcd.client_url]) as seed:
                await seed.put(GET_KEY, value)
            async with AsyncExitStack() as stack:
                await open_direct(stack, bench, etcd, value)
                print("starting the MCP servers ...", file=sys.stderr)
                await open_mcp(stack, bench, tmp, etcd.client_url, args, "stdio")
                await open_mcp(stack, bench, tmp, etcd.client_url, args, "http")
                await bench.measure()
        finally:
            await etcd.astop()
    return bench


# Report ------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.3f}"


def _us(micros: float) -> str:
    return "-" if math.isnan(micros) else f"{micros:.0f}"


def _x(a: Result | None, b: Result | None) -> str:
    if a is None or b is None or b.p50 <= 0:
        return "-"
    return f"{a.p50 / b.p50:.2f}x"


def report(bench: Bench, args: argparse.Namespace) -> None:
    direct_get = bench.get("direct", "EtcdClient.get")
    direct_put = bench.get("direct", "EtcdClient.put")
    header = (
        f"{'transport':<10}{'operation':<18}{'p50 ms':>8}{'p95 ms':>8}{'calls/s':>8}{'x floor':>8}{'x etcd':>8}"
        f"  {'client':>7}{'server':>7}{'etcd':>7}"
    )
    print()
    print(
        f"kv latency: {args.calls} sequential calls per case ({bench.rounds} interleaved rounds) "
        f"after {args.warmup} warm-up, "
        f"value {args.value!r}, python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    )
    print("x floor: p50 / no-op tool p50 on the same transport; x etcd: p50 / direct EtcdClient p50 (get or put)")
    print("client/server/etcd: CPU microseconds per call of each process, all threads (benchmark process = client)")
    print(header)
    print("-" * len(header))
    for r in bench.results:
        floor = bench.get(r.group, FLOOR) if r.group != "direct" else None
        base = direct_put if "put" in r.name else direct_get
        if r.error is not None:
            print(f"{r.group:<10}{r.name:<18}  FAILED: {r.error.splitlines()[0]} (details on stderr)")
            continue
        floor_x = "-" if floor is None or r is floor else _x(r, floor)
        etcd_x = "-" if r is base else _x(r, base)
        cpu = "".join(f"{_us(r.cpu_per_call(who)):>7}" for who in ("client", "server", "etcd"))
        print(f"{r.group:<10}{r.name:<18}{_ms(r.p50):>8}{_ms(r.p95):>8}{r.rate:>8.0f}{floor_x:>8}{etcd_x:>8}  {cpu}")
    print()
    print_verdicts(bench, args)


def print_verdicts(bench: Bench, args: argparse.Namespace) -> None:
    void = " (under a profiler: void)" if args.profile else ""
    extra: dict[str, float] = {}
    for group, label in (("stdio", "stdio"), ("http", "streamable HTTP")):
        aim = f"kv_get p50 <= {TARGET_RATIO}x the no-op floor p50, {label}{void}"
        kv_get, floor = bench.get(group, "kv_get"), bench.get(group, FLOOR)
        if kv_get is None or floor is None:
            verdict(aim, "n/a (a case failed)", "-", "-", False)
            continue
        ratio = kv_get.p50 / floor.p50
        passed = None if args.profile else ratio <= TARGET_RATIO
        verdict(aim, f"{_ms(kv_get.p50)} ms", f"{_ms(floor.p50)} ms", f"{ratio:.2f}x", passed)
        extra[group] = kv_get.cpu_per_call("server") - floor.cpu_per_call("server")
    # The server CPU kv_get adds over a no-op, HTTP against stdio: over the bare MCPServer's floor on both
    # (the aim as first stated), and over the like-for-like floor on stdio (the no-op through our stdin reader).
    ours_stdio = bench.get("stdio", KK_STDIO_NOOP)
    kv_stdio = bench.get("stdio", "kv_get")
    if ours_stdio is not None and kv_stdio is not None:
        extra["stdio, our reader"] = kv_stdio.cpu_per_call("server") - ours_stdio.cpu_per_call("server")
    floors = (("the bare MCPServer's floor", "stdio"), ("stdio's floor through our reader", "stdio, our reader"))
    for floor_name, stdio_key in floors:
        aim = f"server CPU kv_get adds over the no-op: HTTP <= {HTTP_EXTRA_CPU_RATIO}x stdio ({floor_name}){void}"
        if "http" not in extra or stdio_key not in extra or any(math.isnan(v) for v in extra.values()):
            verdict(aim, "n/a", "-", "-", None)
            continue
        http, stdio = extra["http"], extra[stdio_key]
        ok = None if args.profile else http <= HTTP_EXTRA_CPU_RATIO * max(stdio, 0.0)
        verdict(aim, f"{http:.0f} us (HTTP)", f"{stdio:.0f} us (stdio)", ratio_text(http, stdio), ok)
    _bare_server_aims(bench)
    # With --breakdown: what a pause in the middle of a call costs each transport, apart from anything of
    # ours. The same step costs HTTP more than stdio on a bare MCPServer too: it is the transport's.
    pauses = (
        (PAUSED, SHAPE, "a 1 ms pause without I/O adds to a call on a bare MCPServer"),
        (BARE, SHAPE, "an etcd read (our EtcdClient) adds to a call on a bare MCPServer"),
        ("kv_get", SHAPE, "kv_get adds over its shape without etcd (kk-etcd-mcp)"),
    )
    for step, before, what in pauses:
        added = {group: _added_cpu(bench, group, step, before) for group in ("http", "stdio")}
        if not any(math.isnan(v) for v in added.values()):
            aim = f"server CPU {what}: HTTP vs stdio"
            verdict(
                aim,
                f"{added['http']:.0f} us (HTTP)",
                f"{added['stdio']:.0f} us (stdio)",
                ratio_text(*added.values()),
                None,
            )


def _bare_server_aims(bench: Bench) -> None:
    """With --breakdown: the two HTTP aims applied to the bare MCPServer doing kv_get's etcd read (no code of
    kk-etcd-mcp on its path but the etcd client and the result model), as INFO: what mcp's transport reaches
    on this machine without us, the bound beside which our own figures are read."""
    same = "(the same aim, bare MCPServer doing kv_get's read)"
    bare, floor = bench.get("http", BARE), bench.get("http", FLOOR)
    if bare is not None and floor is not None:
        aim = f"{same} p50 <= {TARGET_RATIO}x the no-op floor, streamable HTTP"
        ratio = bare.p50 / floor.p50
        verdict(aim, f"{_ms(bare.p50)} ms", f"{_ms(floor.p50)} ms", f"{ratio:.2f}x", None)
    added = {
        "http": _added_cpu(bench, "http", BARE, FLOOR),
        "stdio": _added_cpu(bench, "stdio", BARE, KK_STDIO_NOOP),
    }
    if not any(math.isnan(v) for v in added.values()):
        aim = (
            f"{same} server CPU it adds over the no-op: "
            f"HTTP <= {HTTP_EXTRA_CPU_RATIO}x stdio (stdio's floor through our reader)"
        )
        verdict(
            aim, f"{added['http']:.0f} us (HTTP)", f"{added['stdio']:.0f} us (stdio)", ratio_text(*added.values()), None
        )


def _added_cpu(bench: Bench, group: str, step: str, before: str) -> float:
    """Server CPU per call of ``step`` minus ``before`` on one transport; NaN when either is missing."""
    after, base = bench.get(group, step), bench.get(group, before)
    if after is None or base is None:
        return math.nan
    return after.cpu_per_call("server") - base.cpu_per_call("server")


def report_breakdown(bench: Bench) -> None:
    """kv_get's p50 and server CPU as steps from the floor (differences of medians: a guide, not an exact sum)."""
    direct = bench.get("direct", "EtcdClient.get")
    print()
    print("breakdown of kv_get (p50 and server CPU per call, each step minus the one before):")
    steps = [
        (FLOOR, "no-op on a bare MCPServer (floor)"),
        (KK_STDIO_NOOP, "+ our stdin reader (kk_etcd_mcp.mcp_server.stdio)"),
        (SHAPE, "+ kv_get's arguments and KvEntry result, no etcd"),
        ("kv_get", "+ etcd round trip and ConfigCenter.get"),
    ]
    for group, label in (("stdio", "stdio"), ("http", "streamable HTTP")):
        print(f"  {label}")
        prev: Result | None = None
        for name, text in steps:
            r = bench.get(group, name)
            if r is None:
                continue
            if prev is None:
                print(f"    {text:<52}{_ms(r.p50):>8} ms  server cpu {_us(r.cpu_per_call('server')):>5} us")
            else:
                dp = (r.p50 - prev.p50) * 1e3
                dc = r.cpu_per_call("server") - prev.cpu_per_call("server")
                cpu = "-" if math.isnan(dc) else f"{dc:+.0f}"
                print(f"    {text:<52}{dp:>+8.3f} ms  server cpu {cpu:>5} us")
            prev = r
        for name, text in (
            (PAUSED, "beside: no etcd, a 1 ms pause"),
            (BARE, "beside: etcd read on the bare MCPServer"),
        ):
            r, shape = bench.get(group, name), bench.get(group, SHAPE)
            if r is not None and shape is not None:
                dc = r.cpu_per_call("server") - shape.cpu_per_call("server")
                cpu = "-" if math.isnan(dc) else f"{dc:+.0f}"
                print(
                    f"    {text + ' (over the shape)':<52}{(r.p50 - shape.p50) * 1e3:>+8.3f} ms  server cpu {cpu:>5} us"
                )
    kv_get, plain = bench.get("http", "kv_get"), bench.get("http", NO_MIDDLEWARE)
    if kv_get is not None and plain is not None:
        dc = kv_get.cpu_per_call("server") - plain.cpu_per_call("server")
        print(
            f"  streamable HTTP, kv_get through our middleware (console, auth, limits, sessions) vs mcp's app alone: "
            f"{(kv_get.p50 - plain.p50) * 1e3:+.3f} ms, server cpu {'-' if math.isnan(dc) else f'{dc:+.0f}'} us"
        )
    if direct is not None:
        print(
            f"  (direct EtcdClient.get from this process: p50 {_ms(direct.p50)} ms, "
            f"client cpu {_us(direct.cpu_per_call('client'))} us)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="measured calls per case (default 500)")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up calls per case (default 50)")
    parser.add_argument(
        "--value", choices=sorted(VALUES), default="text", help="kind of value stored and read (default text)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="split the calls of each case into this many interleaved rounds"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="add the steps between floor and kv_get: our stdin reader, kv_get's result model without etcd",
    )
    parser.add_argument(
        "--profiler",
        choices=["cprofile", "pyinstrument"],
        default="cprofile",
        help="with --profile: cProfile (.prof) or pyinstrument if installed (.pyisession)",
    )
    parser.add_argument("--profile", type=Path, help="run the kk-etcd-mcp servers under a profiler, files here")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 100 calls after 20 warm-up, 2 rounds, --breakdown"
    )
    args = parser.parse_args()
    if args.quick:  # with the breakdown, so that its cases cannot rot either
        args.calls, args.warmup, args.rounds, args.breakdown = 100, 20, 2, True
    if args.calls < 1 or args.warmup < 0:
        parser.error("--calls must be >= 1 and --warmup >= 0")
    started = time.perf_counter()
    bench: Bench = anyio.run(run, args, backend="asyncio")
    report(bench, args)
    if args.breakdown:
        report_breakdown(bench)
    print(f"\n(total run time {time.perf_counter() - started:.1f} s)")
    return 1 if any(r.error is not None for r in bench.results) else 0


if __name__ == "__main__":
    sys.exit(main())
