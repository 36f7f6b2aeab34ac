"""Real health-check targets for tests: HTTP and gRPC servers steered at runtime, and misbehaving ones.

All run on 127.0.0.1 in the test's event loop, on a port given or picked by ``free_port``, and keep
that port across ``stop()`` / ``start()``, so a registered address stays valid through a restart.
Each counts what it received, so a test can tell whether (and how) it is being checked.

- ``HttpHealthServer``: any path answers ``status`` / ``headers`` / ``body`` after ``delay``; ``stream_bytes``
  streams that many zero bytes instead (generated lazily, never held in memory). It counts requests per
  path too (``by_path``), and answers 500 on the paths in ``failing``: one server can be many targets.
- ``GrpcHealthServer``: grpcio-health-checking's asyncio ``HealthServicer``; ``set_status`` per service.
- ``RawTcpServer``: ``"silent"`` accepts and never answers, ``"reset"`` reads then resets (RST),
  ``"garbage"`` answers bytes that are neither HTTP nor HTTP/2.
- ``established_connections(port)``: open TCP connections the server side of ``port`` holds (Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from kk_etcd_mcp.etcd.embedded import free_port

HOST = "127.0.0.1"
ServingStatus = Literal["SERVING", "NOT_SERVING", "UNKNOWN", "SERVICE_UNKNOWN"]


class _Server:
    """start/stop and ``async with`` for the servers below."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class HttpHealthServer(_Server):
    """aiohttp.web server answering every GET with ``status`` and ``body`` (attributes; set them any time)."""

    def __init__(self, port: int | None = None, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.port = port or free_port(HOST)
        self.ssl_context = ssl_context
        self.status = 200
        self.body: bytes | str = b"ok"
        self.headers: dict[str, str] = {}  # extra response headers, e.g. Location
        self.delay = 0.0  # seconds before the answer
        self.stream_bytes: int | None = None  # stream this many bytes instead of ``body``
        self.requests = 0
        self.by_path: Counter[str] = Counter()  # requests per path
        self.failing: set[str] = set()  # paths answered with 500
        self.bytes_sent = 0  # of streamed bodies: what the socket accepted before the client left
        self.peers: list[tuple[str, int]] = []  # client address of each request (a new port: a new connection)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:8080 (https when serving TLS)."""
        return f"{'https' if self.ssl_context else 'http'}://{HOST}:{self.port}"

    @property
    def check_url(self) -> str:
        return f"{self.url}/KKHealthCheck"

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that gives up on a slow answer ends its handler.
        # shutdown_timeout: stop() must not wait a minute for slow or streaming handlers.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, HOST, self.port, ssl_context=self.ssl_context, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.by_path[request.path] += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            self.peers.append((peer[0], peer[1]))
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.path in self.failing:
            return web.Response(status=500, body=b"failing")
        if self.stream_bytes is None:
            return web.Response(status=self.status, body=self.body, headers=self.headers)
        return await self._stream(request, self.stream_bytes)

    async def _stream(self, request: web.Request, size: int) -> web.StreamResponse:
        response = web.StreamResponse(status=self.status, headers=self.headers)
        response.content_length = size
        await response.prepare(request)
        chunk = bytes(64 * 1024)
        left = size
        try:
            while left > 0:
                piece = chunk if left >= len(chunk) else chunk[:left]
                await response.write(piece)  # waits while the client does not read
                self.bytes_sent += len(piece)
                left -= len(piece)
        except (ConnectionError, RuntimeError):
            return response  # the client went away: what this fixture is for
        await response.write_eof()
        return response


class _CountingHealthServicer(health_aio.HealthServicer):  # type: ignore[misc]
    def __init__(self, owner: GrpcHealthServer) -> None:
        super().__init__()
        self._owner = owner

    async def Check(self, request: Any, context: Any) -> Any:
        self._owner.check_calls += 1
        self._owner.peers.add(context.peer())
        return await super().Check(request, context)


class GrpcHealthServer(_Server):
    """grpc.aio server with the grpc.health.v1 servicer; "" (the whole server) starts SERVING.

    ``tls``: (certificate chain PEM, private key PEM) to serve TLS. Statuses survive a restart.
    """

    def __init__(self, port: int | None = None, *, tls: tuple[bytes, bytes] | None = None) -> None:
        self.port = port or free_port(HOST)
        self.tls = tls
        self.check_calls = 0
        self.peers: set[str] = set()  # "ipv4:127.0.0.1:<port>" of each connection that sent a Check
        self._statuses: dict[str, Any] = {"": health_pb2.HealthCheckResponse.SERVING}
        self._server: Any = None
        self._servicer: _CountingHealthServicer | None = None

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    async def set_status(self, service: str, status: ServingStatus) -> None:
        value = health_pb2.HealthCheckResponse.ServingStatus.Value(status)
        self._statuses[service] = value
        if self._servicer is not None:
            await self._servicer.set(service, value)

    async def start(self) -> None:
        # so_reuseport off: two servers must never share a port by accident.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        servicer = _CountingHealthServicer(self)
        for service, value in self._statuses.items():
            await servicer.set(service, value)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        address = f"{HOST}:{self.port}"
        if self.tls is None:
            server.add_insecure_port(address)
        else:
            chain, key = self.tls
            server.add_secure_port(address, grpc.ssl_server_credentials([(key, chain)]))
        await server.start()
        self._server, self._servicer = server, servicer

    async def stop(self) -> None:
        server, self._server, self._servicer = self._server, None, None
        if server is not None:
            await server.stop(grace=None)


Behaviour = Literal["silent", "reset", "garbage"]
GARBAGE = b"\x00\xff\x13garbage: neither HTTP/1.1 nor HTTP/2\r\n\r\n" * 8


class RawTcpServer(_Server):
    """A TCP server that misbehaves as told; ``accepted`` counts connections."""

    def __init__(self, behaviour: Behaviour, port: int | None = None) -> None:
        self.behaviour = behaviour
        self.port = port or free_port(HOST)
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/KKHealthCheck"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, self.port, reuse_address=True)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        try:
            if self.behaviour == "silent":
                while await reader.read(65536):  # swallow the request, answer nothing
                    pass
            elif self.behaviour == "reset":
                await reader.read(65536)
                # Linger 0: close() sends RST instead of FIN, as a crashing peer or a firewall does.
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                await reader.read(65536)
                writer.write(GARBAGE)
                await writer.drain()
                writer.close()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


def established_connections(port: int) -> int:
    """Established TCP connections whose local end is ``port`` (i.e. held by the server on it).

    Read from /proc/net/tcp{,6}; a client that closed its end leaves ESTABLISHED at once.
    """
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state = fields[1], fields[3]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def server_ssl_context(cert_chain: Path, key: Path) -> ssl.SSLContext:
    """A server-side context for ``HttpHealthServer(ssl_context=...)``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_chain, key)
    return context
