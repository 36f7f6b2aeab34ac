"""gRPC probe: grpc.health.v1 ``Check`` with a deadline; SERVING passing, anything else critical.

The caller keeps one channel per instance (see ``Prober``): a check then costs one call on an open
HTTP/2 connection, not a TCP and TLS handshake. A host:port target gets our lean client
(``grpc_lean``: about a third of grpc.aio's CPU per check); a gRPC target URI (``dns:///...``,
``unix:...``) gets grpc.aio, which resolves it (``grpc_aio``). Both fail fast while the target cannot
be reached, so a down target reads "UNAVAILABLE: connection refused" at once, not after the deadline.
"""

from __future__ import annotations

import ssl
import time

import anyio
from grpc_health.v1 import health_pb2

from ..model import CheckSpec, Status, is_grpc_target_uri
from .grpc_lean import CHECK_PATH, LeanHealthChannel, grpc_tls_context
from .health_channel import HealthCallError, HealthChannel
from .result import CheckResult, one_line
from .tcp import split_host_port

CHECK_METHOD = CHECK_PATH
_SERVING = health_pb2.HealthCheckResponse.SERVING
_DETAIL_LIMIT = 512  # servers' error strings can run long; the code and the gist are enough
_WHY = {
    "NOT_FOUND": "the server does not know this service",
    "UNIMPLEMENTED": "the server has no grpc.health.v1 Health service",
}


async def open_channel(spec: CheckSpec, tls_context: ssl.SSLContext | None = None) -> HealthChannel:
    """A channel to ``spec.addr``; with ``spec.tls``, verified by ``tls_context`` when given, else by
    ``spec.ca_file`` (read in a worker thread, off the event loop) or the trusted roots. OSError when the
    CA file cannot be read or loaded. No connection is made until the first check."""
    try:
        host, port = split_host_port(spec.addr)
    except ValueError:
        host, port = "", 0
    if is_grpc_target_uri(spec.addr) or not host:
        from .grpc_aio import AioHealthChannel  # grpc.aio only for the targets only gRPC can resolve

        roots = await anyio.Path(spec.ca_file).read_bytes() if spec.tls and spec.ca_file is not None else None
        return AioHealthChannel(spec, roots)
    if spec.tls and tls_context is None:
        tls_context = await grpc_tls_context(spec.ca_file)
    return LeanHealthChannel(host, port, tls=tls_context if spec.tls else None)


async def probe_grpc(spec: CheckSpec, channel: HealthChannel) -> CheckResult:
    """``Check(service=spec.grpc_service)`` on ``channel`` with deadline ``spec.timeout``."""
    start = time.perf_counter()
    label = f"gRPC check {spec.addr}" + (f" service {spec.grpc_service}" if spec.grpc_service else "")

    def result(status: Status, output: str) -> CheckResult:
        return CheckResult(status, output, time.perf_counter() - start)

    try:
        status = await channel.check(spec.grpc_service, within=spec.timeout)
    except HealthCallError as exc:
        return result("critical", f"{label}: {_describe(exc, spec.timeout)}")
    return result("passing" if status == _SERVING else "critical", f"{label}: {_status_name(status)}")


def _status_name(value: int) -> str:
    try:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(value))
    except ValueError:  # a status newer than our proto
        return f"status {value}"


def _describe(exc: HealthCallError, timeout: float) -> str:
    if exc.code is None:
        return exc.detail
    if exc.code == "DEADLINE_EXCEEDED":
        return f"timed out after {timeout:g}s (DEADLINE_EXCEEDED)"
    why = _WHY.get(exc.code) or exc.detail
    return f"{exc.code}: {one_line(why, _DETAIL_LIMIT)}" if why else exc.code
