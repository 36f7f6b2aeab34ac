"""Start-up: what a Claude Desktop or IDE session waits for before the server answers, next to baselines.

    python bench/startup.py [--rounds 10]
    python bench/startup.py --quick          # 3 rounds: about 20 s

Every case is a fresh process, measured as wall time (``time.perf_counter``) from spawn, and the cases
of a round run one after the other in the same round, so load elsewhere on the machine hits them alike:

* ``python -c pass``: the interpreter alone (context);
* ``python -c "import mcp"``: the baseline of the two commands below;
* ``kk-etcd-mcp --version`` and ``kk-etcd-mcp --help``;
* spawn -> ``initialize`` answered -> ``tools/list`` answered over stdio, for ``kk-etcd-mcp serve``
  (etcd already up, every setting at its default besides the endpoint) and, as its baseline, for a bare
  ``MCPServer`` with as many no-op tools (bench/noop_server.py ``--tools``);
* once, apart: the embedded etcd's own start (``EmbeddedEtcd.astart`` on a fresh data dir).

The cases run as an installed copy does: with the package's bytecode (``__pycache__``), which pip writes
at install and Python at a first start. So ``PYTHONDONTWRITEBYTECODE`` is dropped from their environment
and the first, unmeasured start writes it; with it set, a source checkout would compile every module of
the package again at every start (about 0.1 s), while mcp, the baseline's library, comes compiled.

It prints medians per case and the aims as ``verdict:`` lines (bench/verdicts.py): ``--version`` and
``--help`` at most 1.5x ``import mcp``, and kk-etcd-mcp's spawn -> tools/list at most 1.5x the bare
server's. Informational: the exit code is 0 unless a case failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from verdicts import ratio_text, verdict  # bench/ is sys.path[0] when a bench script runs

from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_ports

BENCH_DIR = Path(__file__).resolve().parent
NOOP_SERVER = BENCH_DIR / "noop_server.py"
TARGET_RATIO = 1.5


def kk_command() -> list[str]:
    """The installed console script next to this interpreter, as a user runs it; else ``python -m``."""
    script = Path(sys.executable).parent / "kk-etcd-mcp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kk_etcd_mcp"]


def clean_env(**settings: str) -> dict[str, str]:
    """The environment without KK_ETCD_* settings, and with bytecode written (see the module's docstring)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KK_ETCD_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update({f"KK_ETCD_{name.upper()}": value for name, value in settings.items()})
    return env


def timed_run(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=clean_env())
    return time.perf_counter() - started


async def spawn_to_tools(command: list[str], env: dict[str, str], errlog: Path) -> tuple[float, float, int]:
    """Seconds from spawn to initialize answered and to tools/list answered, and how many tools it lists."""
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    with errlog.open("a") as err:
        started = time.perf_counter()
        async with Client(stdio_client(params, errlog=err)) as client:
            initialized = time.perf_counter() - started
            tools = await client.list_tools()
            listed = time.perf_counter() - started
    return initialized, listed, len(tools.tools)


async def run(args: argparse.Namespace) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        times.setdefault(name, []).append(seconds)

    kk = kk_command()
    with tempfile.TemporaryDirectory(prefix="kk-startup-") as tmp_name:
        tmp = Path(tmp_name)
        etcd = EmbeddedEtcd(tmp / "etcd", *free_ports(2), log_file=tmp / "etcd.log")
        started = time.perf_counter()
        await etcd.astart()
        add("embedded etcd start (apart)", time.perf_counter() - started)
        try:
            kk_env = clean_env(endpoints=etcd.client_url, transport="stdio")
            # The bare server gets as many tools as kk-etcd-mcp lists (learnt on a first, unmeasured start).
            _, _, tool_count = await spawn_to_tools([*kk, "serve"], kk_env, tmp / "kk.log")
            bare = [sys.executable, str(NOOP_SERVER), "stdio", "--tools", str(tool_count)]
            cases: list[tuple[str, Callable[[], Awaitable[None]]]] = []

            def process(name: str, command: list[str]) -> None:
                async def case() -> None:
                    add(name, await anyio.to_thread.run_sync(timed_run, command))

                cases.append((name, case))

            def session(name: str, command: list[str], env: dict[str, str]) -> None:
                async def case() -> None:
                    initialized, listed, _ = await spawn_to_tools(command, env, tmp / "servers.log")
                    add(f"{name}: initialize", initialized)
                    add(f"{name}: tools/list", listed)

                cases.append((name, case))

            process("python -c pass", [sys.executable, "-c", "pass"])
            process("python -c 'import mcp'", [sys.executable, "-c", "import mcp"])
            process("kk-etcd-mcp --version", [*kk, "--version"])
            process("kk-etcd-mcp --help", [*kk, "--help"])
            session(f"bare MCPServer, {tool_count} tools", bare, clean_env())
            session("kk-etcd-mcp serve", [*kk, "serve"], kk_env)
            for round_no in range(1, args.rounds + 1):
                print(f"  round {round_no}/{args.rounds}", file=sys.stderr, flush=True)
                for _, case in cases:
                    await case()
            times["tools"] = [float(tool_count)]
        finally:
            await etcd.astop()
    return times


def report(times: dict[str, list[float]], args: argparse.Namespace) -> None:
    tool_count = int(times.pop("tools")[0])
    median = {name: statistics.median(samples) for name, samples in times.items()}
    print()
    print(f"start-up: medians of {args.rounds} rounds, python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    print(f"{'case':<52}{'median ms':>10}{'min ms':>9}{'max ms':>9}")
    for name, samples in times.items():
        print(f"{name:<52}{median[name] * 1e3:>10.0f}{min(samples) * 1e3:>9.0f}{max(samples) * 1e3:>9.0f}")
    print()
    mcp = median["python -c 'import mcp'"]
    for command in ("--version", "--help"):
        ours = median[f"kk-etcd-mcp {command}"]
        verdict(
            f"start-up: kk-etcd-mcp {command} <= {TARGET_RATIO}x python -c 'import mcp'",
            f"{ours * 1e3:.0f} ms",
            f"{mcp * 1e3:.0f} ms",
            ratio_text(ours, mcp),
            ours <= TARGET_RATIO * mcp,
        )
    ours = median["kk-etcd-mcp serve: tools/list"]
    bare = median[f"bare MCPServer, {tool_count} tools: tools/list"]
    verdict(
        f"start-up: spawn -> initialize -> tools/list over stdio <= {TARGET_RATIO}x a bare MCPServer "
        f"with {tool_count} tools",
        f"{ours * 1e3:.0f} ms",
        f"{bare * 1e3:.0f} ms",
        ratio_text(ours, bare),
        ours <= TARGET_RATIO * bare,
    )
    etcd = median["embedded etcd start (apart)"]
    verdict("start-up: embedded etcd start (apart, no target)", f"{etcd * 1e3:.0f} ms", "-", "-", None)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds of every case (default 10)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 3
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if shutil.which(kk_command()[0]) is None:
        parser.error(f"cannot run {kk_command()[0]}")
    started = time.perf_counter()
    try:
        times = anyio.run(run, args, backend="asyncio")
    except Exception as exc:
        print(f"startup: a case failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise
    report(times, args)
    print(f"\n(total run time {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
