"""Prometheus metrics of this process, declared once (prometheus-client's default registry).

Labels take bounded values only: a probe kind, a status, a tool name, an error class. What each counts:

- ``kk_etcd_mcp_checks_total{type,result}``, ``kk_etcd_mcp_check_duration_seconds{type}``: every health
  check this process ran; ``kk_etcd_mcp_check_lateness_seconds``: how late each started after its slot;
- ``kk_etcd_mcp_owned_instances``: instances this process checks now; ``kk_etcd_mcp_hub_members``: live
  hubs in its hub group (1 in leader mode while it leads);
- ``kk_etcd_mcp_transitions_total{from_status,to_status}``: status changes it decided;
- ``kk_etcd_mcp_status_writes_total``: status, endpoint and alive-document writes that etcd applied;
  ``kk_etcd_mcp_fenced_write_refusals_total``: writes etcd refused because this hub no longer held its
  membership (or leadership): a paused or cut-off hub's late results;
- ``kk_etcd_mcp_etcd_request_errors_total{error}``: etcd requests that failed, by error class;
- ``kk_etcd_mcp_tool_calls_total{tool,outcome}``, ``kk_etcd_mcp_tool_call_duration_seconds{tool}``: MCP
  tool calls (outcome as in the audit trail: ok, dry_run, refused, error).

``serve_metrics`` serves them on their own port (``kk-etcd-mcp hub --metrics-port``); the HTTP
transports mount ``metrics_app`` at ``/metrics`` behind their token check.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, make_asgi_app, start_http_server

from .errors import StartupError

_PREFIX = "kk_etcd_mcp"
# Checks take from well under a millisecond (a local TCP connect) to the longest timeout (60 s).
_CHECK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CHECKS = Counter(f"{_PREFIX}_checks", "Health checks run, by probe kind and result.", ["type", "result"])
CHECK_DURATION = Histogram(
    f"{_PREFIX}_check_duration_seconds", "How long each health check took.", ["type"], buckets=_CHECK_BUCKETS
)
CHECK_LATENESS = Histogram(
    f"{_PREFIX}_check_lateness_seconds", "How late each check started after its slot.", buckets=_LATENESS_BUCKETS
)
OWNED_INSTANCES = Gauge(f"{_PREFIX}_owned_instances", "Instances this process checks now.")
HUB_MEMBERS = Gauge(f"{_PREFIX}_hub_members", "Live hubs in this process's hub group.")
TRANSITIONS = Counter(f"{_PREFIX}_transitions", "Status changes decided by this process.", ["from_status", "to_status"])
STATUS_WRITES = Counter(f"{_PREFIX}_status_writes", "Status, endpoint and alive-document writes etcd applied.")
FENCED_REFUSALS = Counter(
    f"{_PREFIX}_fenced_write_refusals",
    "Writes etcd refused because this hub no longer held its membership or leadership.",
)
ETCD_ERRORS = Counter(f"{_PREFIX}_etcd_request_errors", "etcd requests that failed, by error class.", ["error"])
TOOL_CALLS = Counter(f"{_PREFIX}_tool_calls", "MCP tool calls, by tool and outcome.", ["tool", "outcome"])
TOOL_DURATION = Histogram(f"{_PREFIX}_tool_call_duration_seconds", "How long each MCP tool call took.", ["tool"])


class CheckMetrics:
    """The check loop's metrics with their label children looked up once (it runs thousands of times a second)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], Callable[[], None]] = {}
        self._durations: dict[str, Callable[[float], None]] = {}

    def check(self, kind: str, result: str, seconds: float) -> None:
        count = self._counts.get((kind, result))
        if count is None:
            count = self._counts[(kind, result)] = CHECKS.labels(kind, result).inc
        count()
        observe = self._durations.get(kind)
        if observe is None:
            observe = self._durations[kind] = CHECK_DURATION.labels(kind).observe
        observe(seconds)


def metrics_app() -> Any:
    """An ASGI app that answers with the exposition text of this process's metrics."""
    return make_asgi_app()


@contextmanager
def serve_metrics(host: str, port: int) -> Iterator[None]:
    """Serve ``/metrics`` at ``host:port`` in a thread while the context lasts; a taken port is a StartupError."""
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = "; choose another with --metrics-port" if exc.errno == errno.EADDRINUSE else ""
        raise StartupError(f"cannot serve metrics on {host}:{port}: {reason.lower()}{hint}") from None
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
