"""grpc.health.v1 ``Check`` on our own unary gRPC channel (``h2grpc``), for host:port targets.

One channel per instance keeps one connection open and opens it again when it is gone (closed by the
server, a GOAWAY, a broken protocol), at most once per check: a target that stays down costs one
connect attempt per check, as a gRPC channel whose reconnect backoff is capped at the interval would.
A check that the server cannot have processed is sent once more on a fresh connection, as gRPC's
transparent retry does (``h2grpc/unary.py``).
"""

from __future__ import annotations

import ssl

import anyio
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2

from ...h2grpc.unary import CallError, UnaryChannel
from .health_channel import HealthCallError

CHECK_PATH = "/grpc.health.v1.Health/Check"
MAX_ANSWER = 64 * 1024  # a health answer is a few bytes
USER_AGENT = "kk-etcd-mcp-health"


async def grpc_tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A client context offering HTTP/2 (ALPN ``h2``, which gRPC servers require) that trusts ``ca_file``
    (loaded in a worker thread) or the system's roots. OSError (ssl.SSLError too) when it cannot load."""

    def build() -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=ca_file)
        context.set_alpn_protocols(["h2"])
        return context

    return await anyio.to_thread.run_sync(build)


class LeanHealthChannel:
    """Health checks of the server at ``host``:``port`` (TLS when ``tls`` is given, verified for ``host``)."""

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.tls = host, port, tls
        self._channel = UnaryChannel([(host, port)], tls=tls, max_answer=MAX_ANSWER, user_agent=USER_AGENT)
        self._messages: dict[str, bytes] = {}  # the request, by service name

    async def check(self, service: str, within: float) -> int:
        """The serving status of ``service`` ('' for the server), within ``within`` seconds in all."""
        try:
            answer = await self._channel.call(CHECK_PATH, self._message(service), within=within)
        except CallError as exc:
            raise HealthCallError(exc.code, exc.details) from None
        try:
            return int(health_pb2.HealthCheckResponse.FromString(answer).status)
        except DecodeError:
            raise HealthCallError("INTERNAL", "the answer is not a HealthCheckResponse") from None

    async def close(self) -> None:
        """Close the connection; a check in flight ends as cancelled, later ones as closed."""
        await self._channel.close()

    def _message(self, service: str) -> bytes:
        message = self._messages.get(service)
        if message is None:
            if len(self._messages) > 8:  # a spec changed again and again: keep the map small
                self._messages.clear()
            message = self._messages[service] = health_pb2.HealthCheckRequest(service=service).SerializeToString()
        return message
