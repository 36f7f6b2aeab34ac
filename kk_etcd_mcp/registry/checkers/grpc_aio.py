"""grpc.health.v1 ``Check`` through grpc.aio, for gRPC target URIs (``dns:///host:port``, ``unix:path``,
``ipv4:...``): gRPC parses those, resolves them and picks the address. Plain host:port targets, nearly
all of them, go through the leaner ``grpc_lean`` client instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import grpc
from grpc_health.v1 import health_pb2

from ...grpc_await import await_grpc
from ..model import CheckSpec
from .health_channel import CHANNEL_CLOSED, CLOSED_DURING_CHECK, HealthCallError

CHECK_METHOD = "/grpc.health.v1.Health/Check"
_CONNECT_FAILED = "failed to connect to all addresses; last error: "  # one address: says nothing


class AioHealthChannel:
    """A grpc.aio channel to ``spec.addr``: TLS when ``spec.tls``, verified by ``ca_roots`` (PEM) or
    gRPC's bundled roots."""

    def __init__(self, spec: CheckSpec, ca_roots: bytes | None = None) -> None:
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
        if spec.tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca_roots)
            self._channel = grpc.aio.secure_channel(spec.addr, credentials, options)
        else:
            self._channel = grpc.aio.insecure_channel(spec.addr, options=options)
        self._check = self._channel.unary_unary(
            CHECK_METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )

    async def check(self, service: str, within: float) -> int:
        try:
            call = self._check(health_pb2.HealthCheckRequest(service=service), timeout=within)
            response = await await_grpc(call)  # the call's own deadline bounds it
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            detail = (exc.details() or "").strip().removeprefix(_CONNECT_FAILED)
            raise HealthCallError(code.name, detail) from None
        except grpc.aio.UsageError:  # the channel was closed before the call
            raise HealthCallError(None, CHANNEL_CLOSED) from None
        except asyncio.CancelledError:
            # Closing the channel cancels its calls, and grpc.aio reports that as CancelledError too;
            # only a cancellation of this task is ours to pass on.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise HealthCallError(None, CLOSED_DURING_CHECK) from None
        return int(response.status)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):  # a channel left open keeps its connection until GC
            await self._channel.close()
