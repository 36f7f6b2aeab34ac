"""grpc.health.v1 ``Check`` over our own HTTP/2 connection (``http2.py``), for host:port targets.

One channel per instance keeps one connection open and opens it again when it is gone (closed by the
server, a GOAWAY, a broken protocol), at most once per check: a target that stays down costs one
connect attempt per check, as a gRPC channel whose reconnect backoff is capped at the interval would.

The call follows the gRPC over HTTP/2 protocol: POST with ``te: trailers`` and ``grpc-timeout``, one
length-prefixed message each way, the verdict in ``grpc-status`` (and ``grpc-message``) of the trailers
or of a trailers-only answer, an HTTP status other than 200 mapped as gRPC clients map it. A request
that the server cannot have processed (a kept connection it had closed meanwhile, a GOAWAY before our
stream, REFUSED_STREAM) is sent once more on a fresh connection, as gRPC's transparent retry does.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import struct
from urllib.parse import unquote

import anyio
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2

from .health_channel import CHANNEL_CLOSED, CLOSED_DURING_CHECK, HealthCallError, status_code_name
from .http2 import Answer, Http2Connection, StreamError, header_block
from .result import os_error_reason

CHECK_PATH = "/grpc.health.v1.Health/Check"
MAX_ANSWER = 64 * 1024  # a health answer is a few bytes
USER_AGENT = "kk-etcd-mcp-health"
# How gRPC clients read an HTTP status other than 200 (gRPC's doc/http-grpc-status-mapping.md).
_HTTP_STATUS_CODES = {
    "400": "INTERNAL", "401": "UNAUTHENTICATED", "403": "PERMISSION_DENIED", "404": "UNIMPLEMENTED",
    "429": "UNAVAILABLE", "502": "UNAVAILABLE", "503": "UNAVAILABLE", "504": "UNAVAILABLE",
}  # fmt: skip


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
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._headers = [
            (":method", "POST"), (":scheme", "https" if tls else "http"), (":path", CHECK_PATH),
            (":authority", authority), ("content-type", "application/grpc"), ("te", "trailers"),
            ("user-agent", USER_AGENT),
        ]  # fmt: skip
        self._blocks: dict[float, bytes] = {}  # the encoded request headers, by timeout
        self._bodies: dict[str, bytes] = {}  # the framed request, by service name
        self._connection: Http2Connection | None = None
        self._connecting = asyncio.Lock()
        self._closed = False

    async def check(self, service: str, within: float) -> int:
        """The serving status of ``service`` ('' for the server), within ``within`` seconds in all."""
        if self._closed:
            raise HealthCallError(None, CHANNEL_CLOSED)
        try:
            async with asyncio.timeout(within):
                return await self._call(self._body(service), self._block(within))
        except TimeoutError:
            raise HealthCallError("DEADLINE_EXCEEDED") from None

    async def close(self) -> None:
        """Close the connection; a check in flight ends as cancelled, later ones as closed."""
        self._closed = True
        if self._connection is not None:
            self._connection.close(CLOSED_DURING_CHECK)
            self._connection = None

    async def _call(self, body: bytes, block: bytes) -> int:
        for attempt in (1, 2):
            connection, reused = await self._connect()
            stream_id, answer = connection.request(block, body)
            try:
                return _serving_status(await answer)
            except StreamError as exc:
                if self._closed:
                    raise HealthCallError(None, CLOSED_DURING_CHECK) from None
                if attempt == 1 and (reused or exc.refused) and exc.unprocessed:
                    continue  # the server never saw it: a kept connection it had just closed, say
                raise HealthCallError("UNAVAILABLE", exc.reason) from None
            finally:
                if not answer.done():  # timed out or cancelled: tell the server to stop
                    connection.cancel(stream_id)
        raise AssertionError("unreachable")

    async def _connect(self) -> tuple[Http2Connection, bool]:
        """The open connection (and True), or a new one (and False)."""
        current = self._connection
        if current is not None and current.usable:  # nearly always: no lock to take
            return current, True
        async with self._connecting:
            current = self._connection
            if current is not None and current.usable:
                return current, True
            if current is not None and not current.open_streams:
                current.close("replaced by a new connection")
            loop = asyncio.get_running_loop()
            try:
                _, connection = await loop.create_connection(
                    lambda: Http2Connection(max_body=MAX_ANSWER),
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                )
            except OSError as exc:  # ssl.SSLError is one too: an untrusted certificate, a failed handshake
                raise HealthCallError("UNAVAILABLE", os_error_reason(exc)) from None
            if self._closed:
                connection.close(CHANNEL_CLOSED)
                raise HealthCallError(None, CHANNEL_CLOSED)
            if self.tls is not None and _negotiated(connection) != "h2":
                connection.close("no HTTP/2")
                raise HealthCallError("UNAVAILABLE", "the server did not negotiate HTTP/2 over TLS (ALPN h2)")
            self._connection = connection
            return connection, False

    def _body(self, service: str) -> bytes:
        body = self._bodies.get(service)
        if body is None:
            if len(self._bodies) > 8:  # a spec changed again and again: keep the map small
                self._bodies.clear()
            message = health_pb2.HealthCheckRequest(service=service).SerializeToString()
            body = self._bodies[service] = b"\x00" + struct.pack(">I", len(message)) + message
        return body

    def _block(self, timeout: float) -> bytes:
        block = self._blocks.get(timeout)
        if block is None:
            if len(self._blocks) > 8:
                self._blocks.clear()
            deadline = ("grpc-timeout", f"{max(1, math.ceil(timeout * 1000))}m")  # milliseconds
            block = self._blocks[timeout] = header_block([*self._headers, deadline])
        return block


def _negotiated(connection: Http2Connection) -> str | None:
    ssl_object = connection.transport.get_extra_info("ssl_object") if connection.transport else None
    return ssl_object.selected_alpn_protocol() if ssl_object is not None else None


def _serving_status(answer: Answer) -> int:
    """The serving status in a complete answer; HealthCallError for any other outcome."""
    http_status = answer.headers.get(":status", "")
    if http_status != "200":
        code = _HTTP_STATUS_CODES.get(http_status, "UNKNOWN")
        raise HealthCallError(code, f"the server answered HTTP status {http_status or 'nothing'}")
    content_type = answer.headers.get("content-type", "")
    if not content_type.startswith("application/grpc"):
        raise HealthCallError("UNKNOWN", f"the answer is not gRPC (content-type {content_type!r})")
    trailers = answer.trailers or answer.headers  # a trailers-only answer: one header block
    status = trailers.get("grpc-status")
    if status is None:
        raise HealthCallError("INTERNAL", "the answer ended without a grpc-status")
    if status != "0":
        raise HealthCallError(status_code_name(status), unquote(trailers.get("grpc-message", "")))
    body = answer.body
    if len(body) < 5 or len(body) != 5 + int.from_bytes(body[1:5], "big"):
        raise HealthCallError("INTERNAL", "the answer is not one length-prefixed message")
    if body[0]:
        raise HealthCallError("INTERNAL", "the answer is compressed, though the request offered no compression")
    try:
        return int(health_pb2.HealthCheckResponse.FromString(bytes(body[5:])).status)
    except DecodeError:
        raise HealthCallError("INTERNAL", "the answer is not a HealthCheckResponse") from None
