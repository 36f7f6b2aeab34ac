"""Soak: 1,000 flapping instances, 50 MCP clients doing compare-and-swap, etcd killed and restarted (issue 5).

    python bench/soak.py [--duration 600] [--instances 1000] [--clients 50] [--restarts 2] [--outage 5] [--json]
    python bench/soak.py --quick       # 15 s, 200 instances, 10 clients, one 2 s outage: under a minute

Not a CI test: it runs for ``--duration`` seconds (10 minutes by default) and stops by itself. Loopback
only. One run starts, in a temp dir, and stops at the end (also on Ctrl-C or an error):

* one etcd (``EmbeddedEtcd``, free loopback ports);
* one ``kk-etcd-mcp serve`` over streamable HTTP (hub on, request_timeout 3 s): the process whose
  memory is reported;
* ``bench/soak_targets.py``: ``--instances`` HTTP instances on their own loopback hosts, each flipping
  between 200 and 500 at random (``--flip-rate`` per instance per second). They are registered through
  the server's ``service_register`` tool (interval 5 s, timeout 2 s, one failure makes critical, one
  success makes passing), so the hub writes a status change for most flips;
* ``--client-procs`` worker processes (this script with ``--worker``) holding ``--clients`` MCP sessions
  over streamable HTTP in all. Each client loops, with a random pause of mean ``--think`` s:
  - half the time it increments one of ``--counters`` shared counters: ``kv_get`` (value and
    mod_revision), then ``kv_put`` of value + 1 with ``expected_revision`` (compare-and-swap); a
    revision conflict is expected and retried;
  - otherwise it writes one of its own ``--keys`` keys the same way (get, then a CAS put).
  Every read is checked: a value older than what this client read or had acknowledged before on that
  key is a stale read (etcd's reads are linearizable).
  Every value is ``<number> <op id>``, so each write in etcd's history can be traced to the call that
  made it. A put that fails with anything but a conflict (etcd unavailable, a timeout, a lost
  session) is ambiguous: it may or may not have been applied.

During the run etcd is SIGKILLed ``--restarts`` times, at even spacing, and started again on the same
data dir ``--outage`` s later. The server and the clients keep running: the server must reconnect
by itself and the sessions must survive.

At the end flapping stops, the hub gets three intervals to catch up, and the results are checked
against etcd directly (a watch from revision 1 replays every write):

* lost writes: acknowledged writes that are not in etcd's history at the revision they were
  acknowledged with, or whose key's final value is older (must be 0);
* CAS violations: a counter whose versions do not go up by exactly 1 each, two acknowledged
  increments from the same base revision, a write applied though it was answered as a conflict, a
  write that no call made, a counter whose final value is not the acknowledged increments plus at
  most the ambiguous ones, a conflict on a client's own key that no ambiguous write explains (must be 0);
* also checked: stale reads, MCP sessions lost, hub statuses that disagree with the targets once
  flapping has stopped, and whether the server still answers (each must be 0 / yes).

Reported besides: ambiguous writes (and how many of them etcd applied), calls by kind, p50/p99 tool
latency outside the outages (a call that overlaps [kill, etcd ready + ``--recovery`` s] is left out),
recovery after each restart, hub status writes and transitions against the targets' flips, and the
server's memory (VmRSS sampled every second, VmHWM at the end). Exit code 1 when a checked figure
fails, 2 when the run itself failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from soak_targets import instance_host  # bench/ is sys.path[0] when this script runs
from verdicts import verdict

from kk_etcd_mcp.errors import leaf_exceptions
from kk_etcd_mcp.etcd import EtcdClient, prefix_end
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, accepts_connections, free_port, free_ports
from kk_etcd_mcp.registry.keys import InstanceKey, RegistryKeys
from kk_etcd_mcp.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
TARGETS_SCRIPT = BENCH_DIR / "soak_targets.py"

KV_PREFIX = "soak/"
REGISTRY = RegistryKeys("kk_service/")
SERVICES = 20  # the instances are spread over this many service names
CHECK = {"interval": 5, "timeout": 2, "failures_before_critical": 1, "success_before_passing": 1}
REQUEST_TIMEOUT = 3.0  # the server's etcd request timeout
CALL_TIMEOUT = 30.0  # a client gives up on one tool call after this long (counted as "client_timeout")
ERROR_BACKOFF = 0.5  # a client's pause after a failed call
KINDS = ("ok", "conflict", "not_found", "unavailable", "busy", "tool_error", "client_timeout", "transport")
TRANSPORT_FAILURES_IN_ROW = 3  # calls in a row without an MCP answer: the session is taken as lost
TOOLS = ("kv_get", "kv_put")
# Children get SIGTERM when this process dies, even by SIGKILL (util-linux's setpriv, where it exists;
# a preexec_fn would make subprocess fork a process that runs grpc threads).
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []


def counter_key(c: int) -> str:
    return f"{KV_PREFIX}counter/{c}"


def own_key(client: int, j: int) -> str:
    return f"{KV_PREFIX}own/c{client:03d}/k{j}"


def _percentile(ordered: list[float], pct: float) -> float:
    """Nearest rank of an already sorted list."""
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def _emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


# The client worker process ---------------------------------------------------------------------------


class SessionLost(Exception):
    """Tool calls kept failing below MCP's tool layer: the session is taken as dead and reopened."""


@dataclass
class Ledger:
    """What one worker's clients did and were told; written to a JSON file at the end."""

    calls: list[tuple[float, float, int, int]] = field(default_factory=list)  # t0, seconds, tool, kind
    acked: list[tuple[str, str, int, int, int]] = field(default_factory=list)  # key, op, revision, number, base
    ambiguous: list[tuple[str, str, str]] = field(default_factory=list)  # key, op, kind
    conflicts: list[tuple[str, str, int, int]] = field(default_factory=list)  # key, op, expected, found
    stale: list[tuple[str, int, int]] = field(default_factory=list)  # key, number read, number seen before
    sessions_lost: list[tuple[int, float, str]] = field(default_factory=list)  # client, when, why
    samples: dict[str, list[str]] = field(default_factory=dict)  # a few error texts by kind
    opened: int = 0  # sessions opened (the first ones and the reopened ones)

    def sample(self, kind: str, text: str) -> None:
        texts = self.samples.setdefault(kind, [])
        if len(texts) < 5:
            texts.append(text[:300])


_CONFLICT = re.compile(r"revision conflict on .*: expected (\d+), found (\d+)")


def classify(text: str) -> str:
    """The kind of a tool error, from the text the model would read."""
    if "revision conflict on" in text:
        return "conflict"
    if "etcd unavailable" in text or "etcd call failed" in text:
        return "unavailable"
    if "busy: " in text:  # max_concurrent_calls reached: refused before anything was done
        return "busy"
    if "key not found: " in text:
        return "not_found"
    return "tool_error"


class SoakClient:
    """One MCP session's loop: counter increments and own-key writes, both a get then a CAS put."""

    def __init__(self, cid: int, args: argparse.Namespace, ledger: Ledger) -> None:
        self.cid = cid
        self.args = args
        self.ledger = ledger
        self.rng = random.Random(f"{args.seed}-{cid}")
        self.ops = 0
        self.failures_in_row = 0  # calls that raised (HTTP error, broken stream) since the last answer
        self.seen: dict[str, int] = {}  # key -> the highest number this client read or had acknowledged

    async def run(self, client: Client) -> None:
        while time.monotonic() < self.args.end:
            if self.rng.random() < 0.5:
                await self.increment(client, counter_key(self.rng.randrange(self.args.counters)))
            else:
                await self.write_own(client, own_key(self.cid, self.rng.randrange(self.args.keys)))
            await anyio.sleep(self.rng.uniform(0, 2 * self.args.think))

    async def increment(self, client: Client, key: str) -> None:
        """Add 1 to a shared counter by compare-and-swap; conflicts are retried until acked or ambiguous."""
        while time.monotonic() < self.args.end:
            kind, entry, _ = await self.call(client, "kv_get", {"key": key})
            if kind != "ok":
                await anyio.sleep(ERROR_BACKOFF)
                continue
            number, base = int(entry["value"].split()[0]), int(entry["mod_revision"])
            self.check_read(key, number)
            if await self.cas_put(client, key, base, number + 1) != "conflict":
                return
            await anyio.sleep(self.rng.uniform(0, 0.02))  # another client won: read again

    async def write_own(self, client: Client, key: str) -> None:
        """Read one of our keys (it must not be older than acknowledged), then CAS-write it."""
        kind, entry, _ = await self.call(client, "kv_get", {"key": key})
        if kind == "ok":
            number, base = int(entry["value"].split()[0]), int(entry["mod_revision"])
        elif kind == "not_found":
            number, base = 0, 0  # expected_revision 0: only while still absent
        else:
            await anyio.sleep(ERROR_BACKOFF)
            return
        self.check_read(key, number)
        await self.cas_put(client, key, base, None)

    def check_read(self, key: str, number: int) -> None:
        """etcd reads are linearizable: a read never shows less than this client saw or wrote before."""
        if number < self.seen.get(key, 0):
            self.ledger.stale.append((key, number, self.seen[key]))
        self.seen[key] = max(number, self.seen.get(key, 0))

    async def cas_put(self, client: Client, key: str, base: int, number: int | None) -> str:
        """One kv_put with expected_revision=base: "acked", "conflict" or "ambiguous".

        ``number`` None (own keys): the op's own number, which only grows, so a stale read shows."""
        self.ops += 1
        op = f"c{self.cid}-{self.ops}"
        number = self.ops if number is None else number
        arguments = {"key": key, "value": f"{number} {op}", "expected_revision": base}
        try:
            kind, result, text = await self.call(client, "kv_put", arguments)
        except SessionLost:
            self.ledger.ambiguous.append((key, op, "transport"))
            raise
        if kind == "ok":
            self.ledger.acked.append((key, op, int(result["revision"]), number, base))
            self.seen[key] = max(number, self.seen.get(key, 0))
            return "acked"
        if kind == "conflict":
            match = _CONFLICT.search(text)
            self.ledger.conflicts.append((key, op, base, int(match.group(2)) if match else -1))
            return "conflict"
        if kind != "busy":  # busy: refused before anything was done (were it applied, the check would tell)
            self.ledger.ambiguous.append((key, op, kind))
        await anyio.sleep(ERROR_BACKOFF)
        return "ambiguous"

    async def call(self, client: Client, tool: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        """(kind, structured result, error text) of one tool call, recorded in the ledger."""
        t0 = time.monotonic()
        content: dict[str, Any]
        try:
            with anyio.fail_after(CALL_TIMEOUT):
                result = await client.call_tool(tool, arguments)
        except Exception as exc:  # below the tool layer: no answer, an HTTP error, a broken stream or session
            kind = "client_timeout" if isinstance(exc, TimeoutError) else "transport"
            text = (
                f"no answer within {CALL_TIMEOUT:g} s" if kind == "client_timeout" else f"{type(exc).__name__}: {exc}"
            )
            self.record(t0, tool, kind, text)
            self.failures_in_row += 1
            if self.failures_in_row >= TRANSPORT_FAILURES_IN_ROW:
                raise SessionLost(f"{tool}: {text}") from exc
            return kind, {}, text
        else:
            self.failures_in_row = 0
            if result.is_error:
                text = " ".join(getattr(c, "text", "") for c in result.content)
                kind, content = classify(text), {}
            else:
                kind, content, text = "ok", result.structured_content or {}, ""
        self.record(t0, tool, kind, text)
        return kind, content, text

    def record(self, t0: float, tool: str, kind: str, text: str) -> None:
        self.ledger.calls.append((t0, time.monotonic() - t0, TOOLS.index(tool), KINDS.index(kind)))
        if kind not in ("ok", "conflict", "not_found"):
            self.ledger.sample(kind, text)


@contextlib.asynccontextmanager
async def mcp_session(url: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(timeout=CALL_TIMEOUT + 5) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def _describe(exc: BaseException) -> str:
    return "; ".join(f"{type(e).__name__}: {e}" for e in leaf_exceptions(exc))[:500]


async def run_client(cid: int, args: argparse.Namespace, ledger: Ledger, ready: list[int], go: anyio.Event) -> None:
    """Open a session, wait for the start, loop until the end. A lost session is counted and reopened."""
    soak = SoakClient(cid, args, ledger)
    started = False
    while True:
        # Bounds the whole session, its opening and closing included, once the end is known.
        with anyio.CancelScope(deadline=args.end + 60) as scope:
            try:
                async with mcp_session(args.url) as client:
                    ledger.opened += 1
                    if not started:
                        ready.append(cid)
                        await go.wait()
                        started = True
                        scope.deadline = args.end + 60
                    await soak.run(client)
                return
            except Exception as exc:
                if not started:
                    raise  # the first session must open; the run fails otherwise
                if time.monotonic() >= args.end:  # closing a session after the end is not the soak's business
                    ledger.sample("close", _describe(exc))
                    return
                ledger.sessions_lost.append((cid, time.monotonic(), _describe(exc)))
        if time.monotonic() >= args.end:
            return
        await anyio.sleep(0.5)


async def worker_main(args: argparse.Namespace) -> None:
    ledger = Ledger()
    ready: list[int] = []
    go = anyio.Event()
    args.end = math.inf
    async with anyio.create_task_group() as tg:
        for cid in range(args.first_client, args.first_client + args.clients):
            tg.start_soon(run_client, cid, args, ledger, ready, go)
        with anyio.fail_after(90):
            while len(ready) < args.clients:
                await anyio.sleep(0.05)
        _emit(ready=len(ready))
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:  # the benchmark is gone
            tg.cancel_scope.cancel()
            return
        args.end = float(json.loads(line)["end"])
        go.set()
    record = {
        "calls": ledger.calls,
        "acked": ledger.acked,
        "ambiguous": ledger.ambiguous,
        "conflicts": ledger.conflicts,
        "stale": ledger.stale,
        "sessions_lost": ledger.sessions_lost,
        "samples": ledger.samples,
        "opened": ledger.opened,
        "cpu": time.process_time(),
    }
    args.out.write_text(json.dumps(record))
    _emit(done=str(args.out))


# The run -----------------------------------------------------------------------------------------------


def note(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Children:
    """Every process the run starts, so that all of them are stopped whatever happens."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.etcd: EmbeddedEtcd | None = None

    def spawn(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with log.open("ab") as err:
            process = subprocess.Popen(
                [*DIE_WITH_PARENT, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                start_new_session=True,  # a Ctrl-C reaches us only, and we stop the children ourselves
            )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        """SIGTERM to every child still running, SIGKILL after 10 s; then etcd."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(OSError):
                    process.terminate()
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        if self.etcd is not None:
            self.etcd.stop()


async def read_line(process: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    """The next JSON line a child prints (other lines are skipped)."""
    stdout = process.stdout
    assert stdout is not None
    with anyio.fail_after(timeout):
        while True:
            line = await anyio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)
            if not line:
                raise RuntimeError(f"child {process.args!r:.200} exited with code {process.wait()}")
            with contextlib.suppress(json.JSONDecodeError):
                answer: dict[str, Any] = json.loads(line)
                return answer


def send_line(process: subprocess.Popen[bytes], **fields: Any) -> None:
    assert process.stdin is not None
    process.stdin.write((json.dumps(fields) + "\n").encode())
    process.stdin.flush()


def proc_status_kb(pid: int, name: str) -> int:
    """A kB figure from /proc/<pid>/status (VmRSS, VmHWM); 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (/proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


@dataclass
class Restart:
    killed: float
    ready: float = math.nan


@dataclass
class Run:
    """What the run saw; the checks come after."""

    args: argparse.Namespace
    start: float = 0.0
    end: float = 0.0
    restarts: list[Restart] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (t, VmRSS kB) of the server, every second
    hwm_kb: int = 0
    server_cpu: float = math.nan
    ledgers: list[dict[str, Any]] = field(default_factory=list)
    kv_history: list[tuple[str, int, str]] = field(default_factory=list)
    flips: int = 0
    hub: dict[str, Any] = field(default_factory=dict)
    server_answers: bool = False
    server_log: dict[str, Any] = field(default_factory=dict)


# ``--trace-memory DIR``: tracemalloc starts in the server 30 s after its start (tracing the imports
# would slow its start tenfold); every minute from then on, the allocation sites that grew most since
# the first of those minutes go to DIR/memory-<minute>.txt.
MEMORY_TRACER = """
import gc, runpy, sys, threading, time, tracemalloc
out = sys.argv.pop(1)
def dump():
    time.sleep(30)
    tracemalloc.start(4)
    time.sleep(60)
    base = tracemalloc.take_snapshot()
    minute = 1
    while True:
        time.sleep(60)
        minute += 1
        top = tracemalloc.take_snapshot().compare_to(base, "traceback")[:20]
        with open(f"{out}/memory-{minute:02d}.txt", "w") as f:
            traced = tracemalloc.get_traced_memory()[0] / 2**20
            f.write(f"traced now {traced:.1f} MiB; objects in gc's permanent (frozen) generation: ")
            f.write(f"{gc.get_freeze_count()}\\n\\n")
            for stat in top:
                f.write(f"{stat.size_diff / 1024:+.0f} KiB, {stat.count_diff:+d} blocks\\n")
                f.write("\\n".join(stat.traceback.format()) + "\\n\\n")
threading.Thread(target=dump, daemon=True).start()
sys.argv = ["kk-etcd-mcp", *sys.argv[1:]]
runpy.run_module("kk_etcd_mcp", run_name="__main__", alter_sys=True)
"""


def server_settings(args: argparse.Namespace) -> dict[str, str]:
    """The server's settings besides endpoint and transport: the soak's, then ``--server-setting``."""
    settings = {"request_timeout": f"{REQUEST_TIMEOUT:g}", "hub": "true", "registry_prefix": REGISTRY.root}
    if "http_rate_limit" in Settings.model_fields:
        # The limit is per client address, and the soak's 50 clients all come from 127.0.0.1.
        settings["http_rate_limit"] = "0"
    for item in args.server_setting:
        name, _, value = item.partition("=")
        settings[name.strip().lower()] = value
    return settings


async def start_server(
    children: Children, etcd_url: str, tmp: Path, args: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KK_ETCD_")}
    env.update({f"KK_ETCD_{name.upper()}": value for name, value in server_settings(args).items()})
    env.update(KK_ETCD_ENDPOINTS=etcd_url, KK_ETCD_TRANSPORT="streamable-http", KK_ETCD_PORT=str(port))
    command = ["-m", "kk_etcd_mcp", "serve"]
    if args.trace_memory:
        args.trace_memory.mkdir(parents=True, exist_ok=True)
        command = ["-c", MEMORY_TRACER, str(args.trace_memory.resolve()), "serve"]
    server = children.spawn([sys.executable, *command], tmp / "server.log", env)
    deadline = time.monotonic() + 30
    while not await anyio.to_thread.run_sync(accepts_connections, "127.0.0.1", port, 0.2):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not listen on port {port}: {tail(tmp / 'server.log')}")
        await anyio.sleep(0.1)
    return server, f"http://127.0.0.1:{port}/mcp"


def tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def instance_key(i: int, port: int) -> InstanceKey:
    return InstanceKey("http", f"soak{i % SERVICES:02d}", f"{instance_host(i)}:{port}")


async def register_instances(url: str, count: int, port: int) -> None:
    """Every instance through the server's own service_register tool, 16 calls at a time."""
    limiter = anyio.CapacityLimiter(16)
    async with mcp_session(url) as client, anyio.create_task_group() as tg:

        async def register(i: int) -> None:
            key = instance_key(i, port)
            async with limiter:
                result = await client.call_tool(
                    "service_register", {"name": key.name, "addr": key.addr, "check": CHECK}
                )
            if result.is_error:
                raise RuntimeError(f"service_register failed: {result.content}")

        for i in range(count):
            tg.start_soon(register, i)


async def wait_statuses(etcd: EtcdClient, count: int, timeout: float) -> None:  # noqa: ASYNC109
    """Until the hub has written a status for every instance (it spreads its first checks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = await etcd.range(REGISTRY.statuses, prefix_end(REGISTRY.statuses), count_only=True)
        if page.count >= count:
            return
        await anyio.sleep(0.5)
    note(f"the hub had not written every status within {timeout:g} s; going on")


async def sample_rss(run: Run, pid: int) -> None:
    while True:
        kb = proc_status_kb(pid, "VmRSS")
        if kb:
            run.rss.append((time.monotonic(), kb))
        await anyio.sleep(1.0)


async def restart_etcd(run: Run, etcd: EmbeddedEtcd) -> None:
    """SIGKILL etcd at even spacing through the run; start it on the same data dir ``--outage`` s later."""
    args = run.args
    for k in range(1, args.restarts + 1):
        await anyio.sleep_until(run.start + args.duration * k / (args.restarts + 1))
        await anyio.to_thread.run_sync(etcd.kill)
        restart = Restart(killed=time.monotonic())
        run.restarts.append(restart)
        note(f"etcd killed (restart {k} of {args.restarts}); starting it again in {args.outage:g} s")
        await anyio.sleep(args.outage)
        await etcd.astart()
        restart.ready = time.monotonic()
        note(f"etcd ready again, {restart.ready - restart.killed:.1f} s after the kill")


async def hub_check(run: Run, etcd: EtcdClient, targets: subprocess.Popen[bytes], port: int) -> None:
    """Stop the flapping, then wait (three intervals + 5 s at most) for the hub's statuses to match."""
    send_line(targets, cmd="freeze")
    answer = await read_line(targets, 10)
    run.flips = int(answer["flips"])
    up = set(answer["up"])
    expected = {
        REGISTRY.status(instance_key(i, port)): "passing" if i in up else "critical" for i in range(run.args.instances)
    }
    frozen = time.monotonic()
    deadline = frozen + 3 * CHECK["interval"] + 5
    while True:
        page = await etcd.range(REGISTRY.statuses, prefix_end(REGISTRY.statuses))
        seen = {kv.key.decode(): json.loads(kv.value).get("status") for kv in page.kvs}
        wrong = sum(1 for key, status in expected.items() if seen.get(key) != status)
        if wrong == 0 or time.monotonic() > deadline:
            break
        await anyio.sleep(1.0)
    run.hub["wrong_after_freeze"] = wrong
    run.hub["converged_s"] = round(time.monotonic() - frozen, 1) if wrong == 0 else None


async def server_answers(url: str) -> bool:
    """Whether a fresh session gets a kv_get answered."""
    try:
        with anyio.fail_after(20):
            async with mcp_session(url) as client:
                result = await client.call_tool("kv_get", {"key": counter_key(0)})
                return not result.is_error
    except Exception:
        return False


async def history(etcd: EtcdClient, prefix: str) -> list[tuple[str, int, str]]:
    """Every put under ``prefix`` since revision 1, in order, as (key, revision, value)."""
    page = await etcd.range(prefix, prefix_end(prefix), keys_only=True)
    last = max((kv.mod_revision for kv in page.kvs), default=0)
    events: list[tuple[str, int, str]] = []
    if not last:
        return events
    with anyio.fail_after(600):
        async for batch in etcd.watch(prefix, prefix_end(prefix), start_revision=1):
            for event in batch.events:
                if event.type == "put":
                    events.append((event.kv.key.decode(), event.kv.mod_revision, event.kv.value.decode()))
            if events and events[-1][1] >= last:
                break
    return events


def hub_writes(events: Iterable[tuple[str, int, str]]) -> dict[str, int]:
    """The hub's status writes: the first one per instance, and the changes after it."""
    last: dict[str, str] = {}
    counts = {"writes": 0, "first": 0, "transitions": 0}
    for key, _, value in events:
        status = json.loads(value).get("status", "")
        counts["writes"] += 1
        if key not in last:
            counts["first"] += 1
        elif last[key] != status:
            counts["transitions"] += 1
        last[key] = status
    return counts


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if p < total % parts else 0) for p in range(parts)]


async def run_soak(args: argparse.Namespace, children: Children, tmp: Path) -> Run:
    run = Run(args)
    client_port, peer_port = free_ports(2)
    etcd = EmbeddedEtcd(tmp / "etcd", client_port, peer_port, log_file=tmp / "etcd.log")
    children.etcd = etcd
    note(f"starting etcd at {etcd.client_url} (data in {tmp / 'etcd'})")
    await etcd.astart()
    async with EtcdClient([etcd.client_url], request_timeout=10) as direct:
        for c in range(args.counters):
            await direct.put(counter_key(c), b"0 init")
        target_port = free_port("0.0.0.0")
        targets = children.spawn(
            [
                sys.executable,
                str(TARGETS_SCRIPT),
                f"--port={target_port}",
                f"--instances={args.instances}",
                f"--flip-rate={args.flip_rate}",
                f"--seed={args.seed}",
            ],
            tmp / "targets.log",
        )
        await read_line(targets, 30)
        server, url = await start_server(children, etcd.client_url, tmp, args)
        note(f"server at {url} (pid {server.pid}); registering {args.instances} instances with service_register")
        await register_instances(url, args.instances, target_port)
        await wait_statuses(direct, args.instances, 60)

        workers: list[subprocess.Popen[bytes]] = []
        first = 0
        for w, count in enumerate(split(args.clients, args.client_procs)):
            worker_args = [
                "--worker",
                f"--url={url}",
                f"--first-client={first}",
                f"--clients={count}",
                f"--counters={args.counters}",
                f"--keys={args.keys}",
                f"--think={args.think}",
                f"--seed={args.seed}",
                f"--out={tmp / f'worker{w}.json'}",
            ]
            workers.append(
                children.spawn([sys.executable, str(Path(__file__).resolve()), *worker_args], tmp / f"worker{w}.log")
            )
            first += count
        for worker in workers:
            await read_line(worker, 120)
        note(f"{args.clients} MCP sessions open in {len(workers)} worker processes; load for {args.duration:g} s")

        run.start = time.monotonic() + 0.5
        run.end = run.start + args.duration
        for worker in workers:
            send_line(worker, end=run.end)
        cpu_before = proc_cpu_s(server.pid)
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample_rss, run, server.pid)
            tg.start_soon(restart_etcd, run, etcd)
            for worker in workers:
                await read_line(worker, args.duration + CALL_TIMEOUT + 120)
            tg.cancel_scope.cancel()
        run.server_cpu = proc_cpu_s(server.pid) - cpu_before
        note("load done; flapping stopped, waiting for the hub to catch up")
        await hub_check(run, direct, targets, target_port)
        run.server_answers = server.poll() is None and await server_answers(url)
        run.hwm_kb = proc_status_kb(server.pid, "VmHWM")
        run.ledgers = [json.loads((tmp / f"worker{w}.json").read_text()) for w in range(len(workers))]
        note("replaying etcd's history to check every acknowledged write")
        run.hub.update(hub_writes(await history(direct, REGISTRY.statuses)))
        run.kv_history = await history(direct, KV_PREFIX)
        log_text = (tmp / "server.log").read_text(errors="replace")
        run.hub["terms"] = log_text.count(" leads: ")
        run.hub["leases_lost"] = log_text.count("lost its lease")
        run.server_log = server_log_summary(log_text)
    return run


_LOG_LEVEL = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ")


def server_log_summary(text: str) -> dict[str, Any]:
    """Warnings, errors and tracebacks in the server's log, with the first few of them."""
    counts: Counter[str] = Counter()
    examples: list[str] = []
    for line in text.splitlines():
        match = _LOG_LEVEL.match(line)
        level = match.group(1) if match else ("TRACEBACK" if line.startswith("Traceback") else None)
        if level:
            counts[level] += 1
            if len(examples) < 8:
                examples.append(line[:300])
    return {"counts": dict(counts), "examples": examples, "bytes": len(text)}


# The checks --------------------------------------------------------------------------------------------


def verify(run: Run) -> dict[str, Any]:
    """Lost writes and CAS violations: the clients' ledgers against etcd's history of every write."""
    acked = {op: (key, rev, number, base) for ledger in run.ledgers for key, op, rev, number, base in ledger["acked"]}
    ambiguous = {op: (key, kind) for ledger in run.ledgers for key, op, kind in ledger["ambiguous"]}
    conflicts = {op: (key, exp, found) for ledger in run.ledgers for key, op, exp, found in ledger["conflicts"]}
    versions: dict[str, list[tuple[int, int, str]]] = defaultdict(list)  # key -> [(revision, number, op)]
    op_at: dict[tuple[str, int], str] = {}
    for key, rev, value in run.kv_history:
        number, op = value.split()
        versions[key].append((rev, int(number), op))
        op_at[(key, rev)] = op
    applied = {op for key, rev, value in run.kv_history if (op := value.split()[1]) != "init"}

    # Lost: an acknowledged write missing from the history at its revision, or a key that ends older.
    lost_history = {op for op, (key, rev, _, _) in acked.items() if op_at.get((key, rev)) != op}
    last_acked: dict[str, tuple[int, int, str]] = {}
    for op, (key, rev, number, _) in acked.items():
        if key not in last_acked or rev > last_acked[key][0]:
            last_acked[key] = (rev, number, op)
    lost_final = {
        op
        for key, (rev, number, op) in last_acked.items()
        if not versions[key] or versions[key][-1][0] < rev or versions[key][-1][1] < number
    }

    # CAS: counters go up by exactly one per version; no base revision acknowledged twice; nothing
    # written by a call that was told "conflict" or by no call at all; final = acked (+ ambiguous applied).
    counters = [counter_key(c) for c in range(run.args.counters)]
    chain_breaks = sum(
        1
        for key in counters
        for (_, before, _), (_, after, _) in zip(versions[key], versions[key][1:], strict=False)
        if after != before + 1
    )
    bases = Counter((key, base) for key, _, _, base in acked.values() if key in counters)
    same_base = sum(n - 1 for n in bases.values() if n > 1)
    applied_on_conflict = sorted(applied & conflicts.keys())
    by_nobody = sorted(applied - acked.keys() - ambiguous.keys() - conflicts.keys())
    counter_rows = []
    counter_off = 0
    for key in counters:
        final = versions[key][-1][1] if versions[key] else 0
        n_acked = sum(1 for k, *_ in acked.values() if k == key)
        n_ambiguous = sum(1 for k, _ in ambiguous.values() if k == key)
        off = max(0, n_acked - final) + max(0, final - n_acked - n_ambiguous)
        counter_off += off
        counter_rows.append({"key": key, "final": final, "acked": n_acked, "ambiguous": n_ambiguous, "off": off})
    own_conflicts = [(op, key, found) for op, (key, _, found) in conflicts.items() if key not in counters]
    unexplained = [
        (op, key, found)
        for op, key, found in own_conflicts
        if op_at.get((key, found)) not in ambiguous and op_at.get((key, found)) != op
    ]
    cas = {
        "counter_chain_breaks": chain_breaks,
        "same_base_acked_twice": same_base,
        "applied_though_conflict": len(applied_on_conflict),
        "written_by_no_call": len(by_nobody),
        "counter_not_acked_plus_ambiguous": counter_off,
        "unexplained_own_key_conflicts": len(unexplained),
    }
    return {
        "acked_writes": len(acked),
        "lost_writes": len(lost_history | lost_final),
        "lost_detail": {
            "not_in_history": len(lost_history),
            "final_value_older": len(lost_final),
            "examples": sorted(lost_history | lost_final)[:10],
        },
        "cas_violations": sum(cas.values()),
        "cas_detail": cas,
        "cas_examples": {
            "applied_though_conflict": applied_on_conflict[:10],
            "by_no_call": by_nobody[:10],
            "unexplained_own_key_conflicts": unexplained[:10],
        },
        "ambiguous_writes": len(ambiguous),
        "ambiguous_applied": len(ambiguous.keys() & applied),
        "conflicts": len(conflicts),
        "own_key_conflicts": len(own_conflicts),
        "counters": counter_rows,
        "writes_in_history": len(run.kv_history) - run.args.counters,
        "stale_reads": sum(len(ledger["stale"]) for ledger in run.ledgers),
        "stale_examples": [s for ledger in run.ledgers for s in ledger["stale"]][:10],
    }


def latency(run: Run) -> dict[str, Any]:
    """Tool latency outside the outages, calls by kind, and how fast calls succeeded after each restart."""
    windows = [(r.killed, (r.ready if not math.isnan(r.ready) else run.end) + run.args.recovery) for r in run.restarts]
    calls = [c for ledger in run.ledgers for c in ledger["calls"]]
    outside: dict[str, list[float]] = {"all": [], **{tool: [] for tool in TOOLS}}
    kinds_out: Counter[str] = Counter()
    kinds_in: Counter[str] = Counter()
    for t0, dt, tool, kind in calls:
        if any(t0 < end and t0 + dt > begin for begin, end in windows):
            kinds_in[KINDS[kind]] += 1
            continue
        kinds_out[KINDS[kind]] += 1
        outside["all"].append(dt)
        outside[TOOLS[tool]].append(dt)
    summary = {}
    for name, samples in outside.items():
        samples.sort()
        summary[name] = {
            "calls": len(samples),
            "p50_ms": round(_percentile(samples, 50) * 1e3, 2),
            "p99_ms": round(_percentile(samples, 99) * 1e3, 2),
            "max_ms": round(samples[-1] * 1e3, 1) if samples else math.nan,
        }
    excluded = sum(end - begin for begin, end in windows)
    recovery = []
    for r in run.restarts:
        ok_after = [t0 + dt for t0, dt, _, kind in calls if KINDS[kind] == "ok" and t0 > r.ready]
        failed = [t0 + dt for t0, dt, _, kind in calls if KINDS[kind] in OUTAGE_FAILURES and t0 + dt > r.killed]
        next_kill = min((x.killed for x in run.restarts if x.killed > r.killed), default=math.inf)
        failed = [t for t in failed if t < next_kill]
        recovery.append(
            {
                "down_s": round(r.ready - r.killed, 1),
                "first_ok_after_ready_s": round(min(ok_after) - r.ready, 2) if ok_after else None,
                "last_failure_after_ready_s": round(max(failed) - r.ready, 2) if failed else None,
                "failed_calls": len(failed),
            }
        )
    return {
        "calls": len(calls),
        "calls_per_s_outside": round(len(outside["all"]) / max(1e-9, run.args.duration - excluded), 1),
        "outside": summary,
        "kinds_outside": dict(kinds_out),
        "kinds_during_outages": dict(kinds_in),
        "excluded_s": round(excluded, 1),
        "recovery": recovery,
    }


# What etcd being down shows as ("busy" comes from the server's own limit, at any time).
OUTAGE_FAILURES = ("unavailable", "tool_error", "client_timeout", "transport")


def memory(run: Run) -> dict[str, Any]:
    rss = run.rss
    if not rss:
        return {}

    def at(share: float) -> float:
        t = run.start + share * run.args.duration
        return min(rss, key=lambda s: abs(s[0] - t))[1] / 1024

    minutes = run.args.duration / 60
    return {
        "max_rss_mib": round(max(kb for _, kb in rss) / 1024, 1),
        "vm_hwm_mib": round(run.hwm_kb / 1024, 1),
        "rss_by_quarter_mib": [round(at(q / 4), 1) for q in range(5)],
        "rss_growth_second_half_mib_per_min": round((at(1.0) - at(0.5)) / (minutes / 2), 2),
        "server_cores": round(run.server_cpu / run.args.duration, 3),
        "client_cores": round(sum(ledger["cpu"] for ledger in run.ledgers) / run.args.duration, 3),
    }


def report(run: Run) -> dict[str, Any]:
    checked = verify(run)
    sessions_lost = [s for ledger in run.ledgers for s in ledger["sessions_lost"]]
    checks = {
        "lost writes": checked["lost_writes"],
        "CAS violations": checked["cas_violations"],
        "stale reads": checked["stale_reads"],
        "MCP sessions lost": len(sessions_lost),
        "hub statuses wrong once flapping stopped": run.hub.get("wrong_after_freeze", -1),
        "server not answering at the end": 0 if run.server_answers else 1,
    }
    samples: dict[str, list[str]] = defaultdict(list)
    for ledger in run.ledgers:
        for kind, texts in ledger["samples"].items():
            samples[kind].extend(texts[: 3 - len(samples[kind])])
    return {
        "settings": {
            k: getattr(run.args, k)
            for k in (
                "duration",
                "instances",
                "clients",
                "restarts",
                "outage",
                "recovery",
                "counters",
                "keys",
                "think",
                "flip_rate",
                "client_procs",
                "seed",
            )
        },
        "checks": checks,
        "passed": all(v == 0 for v in checks.values()),
        "writes": checked,
        "latency": latency(run),
        "sessions": {"lost": sessions_lost[:20], "opened": sum(ledger["opened"] for ledger in run.ledgers)},
        "memory": memory(run),
        "hub": {**run.hub, "target_flips": run.flips},
        "error_samples": samples,
        "server_settings": server_settings(run.args),
        "server_log": run.server_log,
        "machine": {"cpus": os.cpu_count(), "load_at_end": [round(x, 2) for x in os.getloadavg()]},
    }


# Output ------------------------------------------------------------------------------------------------


def print_summary(result: dict[str, Any]) -> None:
    s, checks, w, lat, mem, hub = (
        result["settings"],
        result["checks"],
        result["writes"],
        result["latency"],
        result["memory"],
        result["hub"],
    )
    print()
    print(
        f"soak: {s['duration']:g} s, {s['instances']} flapping instances, {s['clients']} MCP clients over "
        f"streamable HTTP, etcd killed {s['restarts']} time(s) (down {s['outage']:g} s each)"
    )
    print()
    for name, value in checks.items():
        word = "PASS" if value == 0 else "FAIL"
        must = "must be 0" if name in ("lost writes", "CAS violations") else "checked"
        extra = ""
        if name == "lost writes":
            extra = (
                f"  (of {w['acked_writes']:,} acknowledged writes; {w['lost_detail']})"
                if value
                else (f"  (of {w['acked_writes']:,} acknowledged writes)")
            )
        elif name == "CAS violations" and value:
            extra = f"  {w['cas_detail']}"
        elif name.startswith("hub") and value == 0:
            extra = f"  (matched {hub['converged_s']} s after the flapping stopped)"
        print(f"  {name:<42}{value:>6}  {must:<10}{word}{extra}")
    print()
    acked_counters = sum(row["acked"] for row in w["counters"])
    print(
        f"writes: {w['acked_writes']:,} acknowledged ({acked_counters:,} counter increments, "
        f"{w['acked_writes'] - acked_counters:,} own keys), {w['writes_in_history']:,} in etcd's history; "
        f"{w['conflicts']:,} answered as revision conflicts ({w['own_key_conflicts']} on own keys); "
        f"{w['ambiguous_writes']} ambiguous, of which etcd applied {w['ambiguous_applied']}"
    )
    for row in w["counters"]:
        print(
            f"  {row['key']}: final {row['final']:,} = {row['acked']:,} acknowledged + "
            f"{row['final'] - row['acked']} of {row['ambiguous']} ambiguous"
        )
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(lat["kinds_outside"].items()))
    during = ", ".join(f"{k} {v:,}" for k, v in sorted(lat["kinds_during_outages"].items())) or "none"
    print(f"calls: {lat['calls']:,}; outside the outages {lat['calls_per_s_outside']}/s: {kinds}")
    print(f"  during the outages (+{s['recovery']:g} s each, {lat['excluded_s']} s in all): {during}")
    print(f"latency outside the outages (ms):  {'calls':>8}{'p50':>9}{'p99':>9}{'max':>9}")
    for tool, row in lat["outside"].items():
        print(f"  {tool:<32}{row['calls']:>8,}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}{row['max_ms']:>9.0f}")
    for i, r in enumerate(lat["recovery"], 1):
        last = r["last_failure_after_ready_s"]
        last_text = "none" if last is None else f"{abs(last)} s {'before' if last < 0 else 'after'} it"
        print(
            f"restart {i}: etcd down {r['down_s']} s; {r['failed_calls']} failed calls; the first successful "
            f"call ended {r['first_ok_after_ready_s']} s after etcd was ready, the last failed one {last_text}"
        )
    if mem:
        print(
            f"server: max RSS {mem['vm_hwm_mib']} MiB (VmHWM; sampled max {mem['max_rss_mib']}); VmRSS at 0, 1/4, "
            f"1/2, 3/4 and the end of the load: {', '.join(f'{x:g}' for x in mem['rss_by_quarter_mib'])} MiB "
            f"({mem['rss_growth_second_half_mib_per_min']:+g} MiB/min over the second half); "
            f"{mem['server_cores']} cores (the client workers: {mem['client_cores']})"
        )
    print(
        f"hub: {hub.get('writes', 0):,} status writes ({hub.get('first', 0):,} first, {hub.get('transitions', 0):,} "
        f"transitions) for {hub['target_flips']:,} flips at the targets; {hub.get('terms')} leadership term(s), "
        f"{hub.get('leases_lost')} lease(s) lost"
    )
    sessions = result["sessions"]
    print(
        f"MCP sessions: {s['clients']} at the start, {sessions['opened']} opened in all, {len(sessions['lost'])} lost"
    )
    for cid, _, why in sessions["lost"][:5]:
        print(f"  client {cid}: {why[:200]}")
    for kind, texts in result["error_samples"].items():
        for text in texts[:2]:
            print(f"  e.g. {kind}: {text[:200]}")
    log = result["server_log"]
    levels = ", ".join(f"{n} {level}" for level, n in sorted(log.get("counts", {}).items())) or "no warning or error"
    print(f"server log: {levels} ({log.get('bytes', 0) / 1e6:.1f} MB in all)")
    for line in log.get("examples", [])[:4]:
        print(f"  {line[:200]}")
    settings = ", ".join(f"{k}={v}" for k, v in result["server_settings"].items())
    print(f"server settings besides the defaults: {settings}")
    print(f"machine: {result['machine']['cpus']} cpus, load average at the end {result['machine']['load_at_end']}")
    print()
    for name, value in checks.items():
        must = "must be 0" if name in ("lost writes", "CAS violations") else "checked"
        of = f"of {w['acked_writes']:,} acknowledged writes" if name == "lost writes" else "-"
        verdict(f"soak: {name} ({must})", str(value), of, "-", value == 0)
    print()
    print("PASS" if result["passed"] else "FAIL: " + ", ".join(k for k, v in checks.items() if v))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--instances", type=int, default=1000, help="flapping HTTP instances (default 1000)")
    parser.add_argument("--clients", type=int, default=50, help="MCP client sessions (default 50)")
    parser.add_argument("--restarts", type=int, default=2, help="etcd kills during the run (default 2)")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds etcd stays down each time (default 5)")
    parser.add_argument(
        "--recovery", type=float, default=5.0, help="seconds after etcd is back still left out of latency (default 5)"
    )
    parser.add_argument("--counters", type=int, default=4, help="shared counter keys (default 4)")
    parser.add_argument("--keys", type=int, default=4, help="own keys per client (default 4)")
    parser.add_argument("--think", type=float, default=0.5, help="mean pause between a client's steps, s (default 0.5)")
    parser.add_argument("--flip-rate", type=float, default=0.02, help="flips per instance per second (default 0.02)")
    parser.add_argument("--client-procs", type=int, default=2, help="worker processes holding the clients (default 2)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the server (as in config.example.toml), e.g. max_concurrent_calls=64; repeatable",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 15 s, 200 instances, 10 clients, one 2 s outage"
    )
    parser.add_argument("--keep-logs", type=Path, help="copy the etcd, server, target and worker logs here")
    parser.add_argument(
        "--trace-memory",
        type=Path,
        metavar="DIR",
        help="run the server under tracemalloc; the allocation sites that grew most go to DIR every minute "
        "(slows the server: latency and memory figures are then inflated)",
    )
    # A client worker process (internal).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--first-client", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        anyio.run(worker_main, args, backend="asyncio")
        return 0
    if args.quick:
        args.duration, args.instances, args.clients, args.client_procs = 15.0, 200, 10, 1
        args.restarts, args.outage, args.recovery = 1, 2.0, 2.0
    if args.duration <= 0 or args.instances < 1 or args.clients < 1 or args.restarts < 0 or args.outage < 0:
        parser.error("--duration, --instances and --clients must be positive, --restarts and --outage not negative")
    args.client_procs = max(1, min(args.client_procs, args.clients))

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)  # stop as on Ctrl-C: the children go with us
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (a `&` job)
    children = Children()
    tmp = Path(tempfile.mkdtemp(prefix="kk-soak-"))
    started = time.monotonic()
    try:
        run = anyio.run(run_soak, args, children, tmp, backend="asyncio")
    except KeyboardInterrupt:
        note("interrupted; stopping every process of the run")
        return 130
    except Exception:
        traceback.print_exc()
        note(f"the run failed; logs: {', '.join(str(p) for p in sorted(tmp.glob('*.log')))}")
        return 2
    finally:
        children.stop_all()
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in tmp.glob("*.log"):
                shutil.copy(log, args.keep_logs / log.name)
        shutil.rmtree(tmp, ignore_errors=True)
    result = report(run)
    result["total_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_summary(result)
        print(f"(total run time {result['total_s']} s)")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
