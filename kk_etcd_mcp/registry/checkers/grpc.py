"""gRPC probe: grpc.health.v1 ``Check`` with a deadline; SERVING passing, anything else critical.

The caller keeps one channel per instance (see ``Prober``): a check then costs one RPC on an open
HTTP/2 connection, not a TCP and TLS handshake. RPCs fail fast while the channel cannot connect, so
a down target reads "UNAVAILABLE: ... Connection refused" at once rather than after the deadline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio
import grpc
from grpc_health.v1 import health_pb2

from ...grpc_await import await_grpc
from ..model import CheckSpec, Status
from .result import CheckResult, one_line

CHECK_METHOD = "/grpc.health.v1.Health/Check"
_SERVING = health_pb2.HealthCheckResponse.SERVING
_DETAIL_LIMIT = 512  # gRPC core's error strings can run long; the code and the gist are enough
_CONNECT_FAILED = "failed to connect to all addresses; last error: "  # one address: says nothing
_WHY = {
    grpc.StatusCode.NOT_FOUND: "the server does not know this service",
    grpc.StatusCode.UNIMPLEMENTED: "the server has no grpc.health.v1 Health service",
}


async def open_channel(spec: CheckSpec) -> Any:
    """A grpc.aio channel to ``spec.addr``: TLS when ``spec.tls``, verified by ``spec.ca_file`` (read in a
    worker thread, off the event loop) or gRPC's bundled roots. OSError when the CA file cannot be read."""
    # gRPC's reconnect backoff grows to 120 s: a restarted target would stay critical that long.
    # Capping it at the interval bounds recovery to about two intervals, at about one connect
    # attempt per interval for a target that stays down (what a check costs anyway).
    backoff_ms = int(min(max(spec.interval, 1.0), 120.0) * 1000)
    options: list[tuple[str, Any]] = [
        ("grpc.max_reconnect_backoff_ms", backoff_ms),
        ("grpc.initial_reconnect_backoff_ms", min(1000, backoff_ms)),
        ("grpc.enable_http_proxy", 0),  # targets are probed directly, as the hub sees them
        ("grpc.max_receive_message_length", 64 * 1024),  # a health answer is a few bytes
        ("grpc.primary_user_agent", "kk-etcd-mcp-health"),
    ]
    if not spec.tls:
        return grpc.aio.insecure_channel(spec.addr, options=options)
    # Small, and read once per channel, not per check.
    roots = await anyio.Path(spec.ca_file).read_bytes() if spec.ca_file is not None else None
    return grpc.aio.secure_channel(spec.addr, grpc.ssl_channel_credentials(root_certificates=roots), options)


async def probe_grpc(spec: CheckSpec, channel: Any) -> CheckResult:
    """``Check(service=spec.grpc_service)`` on ``channel`` with deadline ``spec.timeout``."""
    start = time.perf_counter()
    label = f"gRPC check {spec.addr}" + (f" service {spec.grpc_service}" if spec.grpc_service else "")

    def result(status: Status, output: str) -> CheckResult:
        return CheckResult(status, output, time.perf_counter() - start)

    check = channel.unary_unary(
        CHECK_METHOD,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    try:
        call = check(health_pb2.HealthCheckRequest(service=spec.grpc_service), timeout=spec.timeout)
        response = await await_grpc(call)  # the call's own deadline bounds it
    except grpc.RpcError as exc:
        return result("critical", f"{label}: {_describe(exc, spec.timeout)}")
    except grpc.aio.UsageError as exc:  # the channel was closed before the call
        return result("critical", f"{label}: {exc}")
    except asyncio.CancelledError:
        # Closing the channel cancels its calls, and grpc.aio reports that as CancelledError too;
        # only a cancellation of this task is ours to pass on.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return result("critical", f"{label}: cancelled (channel closed)")
    name = _status_name(response.status)
    return result("passing" if response.status == _SERVING else "critical", f"{label}: {name}")


def _status_name(value: int) -> str:
    try:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(value))
    except ValueError:  # a status newer than our proto
        return f"status {value}"


def _describe(exc: Any, timeout: float) -> str:
    code: grpc.StatusCode = exc.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"timed out after {timeout:g}s (DEADLINE_EXCEEDED)"
    why = _WHY.get(code) or (exc.details() or "").strip().removeprefix(_CONNECT_FAILED)
    return f"{code.name}: {one_line(why, _DETAIL_LIMIT)}" if why else code.name
