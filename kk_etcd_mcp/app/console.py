"""The registry's commands and their views: ``kk-etcd-mcp hub`` and ``kk-etcd-mcp services``."""

from __future__ import annotations

import logging
import sys
from contextlib import ExitStack, aclosing
from datetime import UTC, datetime
from typing import TextIO

import anyio

from ..etcd import EtcdClient, list_and_watch
from ..metrics import serve_metrics
from ..registry import HubRunner, Instance, RegistryKeys, RegistryService, ServiceType
from ..registry.checkers import Prober
from ..settings import Settings

log = logging.getLogger(__name__)

_REDRAW_DELAY = 0.2  # coalesce a burst of changes into one redraw


async def run_hub(etcd: EtcdClient, keys: RegistryKeys, settings: Settings) -> None:
    """Check until cancelled; on the way out the lease is revoked, so the others take over at once.
    With ``metrics_port``, Prometheus metrics are served at ``/metrics`` meanwhile."""
    runner = HubRunner(etcd, keys, lease_ttl=settings.hub_lease_ttl, mode=settings.hub_mode, weight=settings.hub_weight)
    with ExitStack() as stack:
        if settings.metrics_port is not None:
            stack.enter_context(serve_metrics(settings.metrics_host, settings.metrics_port))
            log.info("serving metrics at http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
        await runner.run()


async def show_services(
    etcd: EtcdClient,
    keys: RegistryKeys,
    name: str | None,
    service_type: ServiceType | None,
    *,
    watch: bool,
    out: TextIO = sys.stdout,
) -> None:
    async with Prober() as prober:
        registry = RegistryService(etcd, keys, prober)
        revision = await etcd.current_revision() if watch else 0  # any change after it redraws the table
        listing = await registry.list_instances(name, service_type)
        out.write(render_table(listing.instances, listing.hub))
        out.flush()
        if not watch:
            return
        # A compaction (etcd was out of reach for long) lists the keys again: that redraws too.
        changes = list_and_watch(etcd, keys.root, prefix=True, start_revision=revision + 1, keys_only=True)
        async with aclosing(changes):
            async for _ in changes:
                await anyio.sleep(_REDRAW_DELAY)
                listing = await registry.list_instances(name, service_type)
                out.write("\n" + render_table(listing.instances, listing.hub))
                out.flush()


def render_table(instances: list[Instance], hub: str | None, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    header = ("TYPE", "NAME", "ADDR", "STATUS", "SINCE", "CHECKED_BY", "OUTPUT")
    rows = [
        (i.type, i.name, i.addr, i.status, _ago(i.since, now), i.checked_by or "-", " ".join(i.output.split())[:80])
        for i in sorted(instances, key=lambda i: (i.name, i.type, i.addr))
    ]
    widths = [max(len(str(row[col])) for row in [header, *rows]) for col in range(len(header) - 1)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
             for row in [header, *rows]]  # fmt: skip
    checkers = sorted({i.checked_by for i in instances if i.checked_by})
    if not hub:
        checker = "no hub is running: statuses are not being updated"
    elif len(checkers) > 1:
        checker = f"checked by hubs {', '.join(checkers)}; {hub} holds the registry-wide duties"
    else:
        checker = f"checked by hub {checkers[0] if checkers else hub}"
    lines.append(f"{len(rows)} instance(s); {checker}")
    return "\n".join(lines) + "\n"


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"
