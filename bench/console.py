"""The web console's two figures: opening it on 1,000 instances, and a failure reaching the page.

    python bench/console.py [--n 1000] [--rounds 5] [--quick]

One run starts its own etcd (embedded, free loopback ports, temp dir), health targets
(bench/health_targets.py: one HTTP listener answering every instance, each on a loopback host of its
own, plus a victim listener of its own) and ``kk-etcd-mcp serve --transport streamable-http`` with its
hub. It registers N HTTP instances straight into etcd (checked every 5 s; the victim every 1 s with
failures_before_critical=1), waits until the hub has them all passing, then drives Debian's chromium
(headless, through Playwright, as tests/test_console.py does; never `playwright install`):

* open: a fresh browser context (empty cache) opens /ui/; the time from ``page.goto`` to the services
  table holding all N rows (the page connects, subscribes to kk://services, reads it, renders).
* failure: the victim's listener is closed; the time from then (CLOCK_MONOTONIC, shared with the target
  process) to etcd holding its status ``critical`` (the hub's detection, seen through a watch from
  this process) and to the page showing it ``critical`` (no reload: the subscription's update, a read
  of kk://services, the row's cells changed in place). The difference is the console's own share.
  The victim is started again and seen passing before the next round.

Figures are printed per round and as medians. It is a measurement, not a test: exit code 0 unless a
phase failed. ``--quick``: 200 instances, 2 rounds. Its ``verdict:`` lines (bench/verdicts.py): the open time
(informational) and the failure shown on the page within a second of etcd holding it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent / "tests")]

from console_browser import chromium, chromium_path, missing_reason  # noqa: E402
from hub_scale import Targets, instance_host, register, start_targets  # noqa: E402
from mcp_helpers import http_server  # noqa: E402
from verdicts import ratio_text, verdict  # noqa: E402

from kk_etcd_mcp.etcd import EtcdClient, prefix_end  # noqa: E402
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_ports  # noqa: E402
from kk_etcd_mcp.registry.keys import RegistryKeys  # noqa: E402
from kk_etcd_mcp.registry.model import CheckOptions, Registration, resolve_check  # noqa: E402

PAGE_AFTER_ETCD = 1.0  # s: the page shows a failure within a second of etcd holding it (the console's aim)
SERVICES = 50  # the instances are spread over this many service names
VICTIM = "victim"
ROWS = "n => document.querySelectorAll('.services-table tbody tr').length === n"
# The victim's status badge says `status` (functions, not expressions: the page's CSP forbids eval).
BADGE = '([id, status]) => document.querySelector(`tr[data-instance="${id}"] .status`)?.dataset.status === status'


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def registrations(n: int, port: int, victim_port: int) -> tuple[list[Registration], str]:
    steady = CheckOptions(interval=5, timeout=5)
    regs = []
    for i in range(n - 1):
        addr = f"{instance_host(i)}:{port}"
        regs.append(
            Registration(
                type="http", name=f"svc{i % SERVICES:02d}", addr=addr, check=resolve_check("http", addr, steady)
            )
        )
    victim_addr = f"127.0.1.1:{victim_port}"
    fast = CheckOptions(interval=1, timeout=1, failures_before_critical=1)
    regs.append(
        Registration(type="http", name=VICTIM, addr=victim_addr, check=resolve_check("http", victim_addr, fast))
    )
    return regs, victim_addr


async def passing(etcd: EtcdClient, keys: RegistryKeys) -> int:
    page = await etcd.range(keys.statuses.encode(), prefix_end(keys.statuses))
    return sum(1 for kv in page.kvs if json.loads(kv.value).get("status") == "passing")


async def wait_until(check: Callable[[], object], what: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not await check():  # type: ignore[misc]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {limit:.0f} s")
        await anyio.sleep(0.2)


async def status_turns(etcd: EtcdClient, key: str, status: str, seen: list[float]) -> None:
    """Note the monotonic time at which etcd's status document for ``key`` first says ``status``."""
    async for batch in etcd.watch(key.encode()):
        for event in batch.events:
            if event.kv.value and json.loads(event.kv.value).get("status") == status:
                seen.append(time.monotonic())
                return


async def run(args: argparse.Namespace) -> int:
    if chromium_path() is None:
        note(missing_reason())
        return 1
    keys = RegistryKeys()
    with tempfile.TemporaryDirectory(prefix="kk-console-bench-") as tmp_name:
        tmp = Path(tmp_name)
        etcd_server = EmbeddedEtcd(tmp / "etcd", *free_ports(2), log_file=tmp / "etcd.log")
        await etcd_server.astart()
        try:
            async with (
                EtcdClient([etcd_server.client_url]) as etcd,
                start_targets(1, 1, tmp / "targets.log") as targets,
            ):
                regs, victim_addr = registrations(args.n, targets.http_port, targets.victim_ports["http"][0])
                await register(etcd, keys, regs)
                note(f"registered {args.n} instances; starting the server")
                with (
                    (tmp / "server.log").open("wb") as log,
                    http_server(etcd_server.client_url, "streamable-http", stderr=log, hub="true") as server,
                ):

                    async def all_passing() -> bool:
                        return await passing(etcd, keys) == args.n

                    await wait_until(all_passing, f"all {args.n} instances passing", 120)
                    note("all passing; opening the console")
                    return await measure(args, etcd, keys, targets, server.port, victim_addr)
        finally:
            await etcd_server.astop()


async def measure(
    args: argparse.Namespace, etcd: EtcdClient, keys: RegistryKeys, targets: Targets, port: int, victim_addr: str
) -> int:
    url = f"http://127.0.0.1:{port}/ui/"
    victim_status = f"{keys.statuses}Http/{VICTIM}/{victim_addr}"
    victim = f"http/{VICTIM}/{victim_addr}"
    opened, detected, shown = [], [], []
    async with chromium() as browser:
        for round_no in range(1, args.rounds + 1):
            context = await browser.new_context()
            page = await context.new_page()
            started = time.perf_counter()
            await page.goto(url)
            await page.wait_for_function(ROWS, arg=args.n, polling="raf", timeout=120_000)
            opened.append(time.perf_counter() - started)
            await page.wait_for_function(BADGE, arg=[victim, "passing"], polling="raf", timeout=60_000)

            seen: list[float] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(status_turns, etcd, victim_status, "critical", seen)
                await anyio.sleep(0.2)  # the watch is open
                failed_at = await targets.victims("stop", "http")
                await page.wait_for_function(BADGE, arg=[victim, "critical"], polling="raf", timeout=60_000)
                on_page = time.monotonic()
                with anyio.fail_after(30):
                    while not seen:
                        await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
            detected.append(seen[0] - failed_at)
            shown.append(on_page - failed_at)
            print(
                f"round {round_no}: open {opened[-1]:.2f} s; failure -> etcd critical {detected[-1]:.2f} s, "
                f"-> page critical {shown[-1]:.2f} s (page {shown[-1] - detected[-1]:.3f} s after etcd)",
                flush=True,
            )
            await targets.victims("start", "http")
            await page.wait_for_function(BADGE, arg=[victim, "passing"], polling="raf", timeout=60_000)
            await context.close()

    print()
    print(f"instances {args.n}, rounds {args.rounds} (medians; max in brackets)")
    print(f"open /ui/ -> table with {args.n} rows      {statistics.median(opened):6.2f} s  [{max(opened):.2f}]")
    print(f"target failure -> etcd status critical    {statistics.median(detected):6.2f} s  [{max(detected):.2f}]")
    print(f"target failure -> page shows critical     {statistics.median(shown):6.2f} s  [{max(shown):.2f}]")
    after = [s - d for s, d in zip(shown, detected, strict=True)]
    print(f"page after etcd (the console's share)     {statistics.median(after):6.3f} s  [{max(after):.3f}]")
    print()
    opened_text = f"{statistics.median(opened):.2f} s"
    verdict(f"console: open /ui/ -> table with {args.n} rows (no target)", opened_text, "-", "-", None)
    verdict(
        f"console: failure -> page critical <= the hub's detection + {PAGE_AFTER_ETCD:g} s (max of {args.rounds})",
        f"{statistics.median(shown):.2f} s (page after etcd: max {max(after):.3f} s)",
        f"{statistics.median(detected):.2f} s (etcd critical)",
        ratio_text(statistics.median(shown), statistics.median(detected)),
        max(after) < PAGE_AFTER_ETCD,
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="instances (default 1000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of open + failure (default 5)")
    parser.add_argument("--quick", action="store_true", help="200 instances, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds = 200, 2
    return anyio.run(run, args, backend="asyncio")


if __name__ == "__main__":
    sys.exit(main())
