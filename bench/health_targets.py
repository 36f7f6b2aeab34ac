"""Cheap health-check targets for bench/hub_scale.py: one HTTP and one gRPC listener for thousands of instances.

    python bench/health_targets.py --http-port P --grpc-port Q [--victim-http-ports A,B] [--victim-grpc-ports C,D]

* HTTP: a raw asyncio responder (no HTTP framework) on ``0.0.0.0:P``. It answers every request
  with ``200 OK`` and the body ``ok`` and keeps the connection open (HTTP/1.1 keep-alive). Requests
  are counted by their blank line, so this works only for body-less requests such as health-check
  GETs, which is all it gets.
* gRPC: a ``grpc.aio`` server on ``0.0.0.0:Q`` with grpcio-health-checking's asyncio
  ``HealthServicer``, whose ``Check`` answers SERVING for any service name (the benchmark gives
  every instance a service name of its own) and notes which (service, peer) pairs it has seen.

Both bind the wildcard address, so any loopback address ``127.a.b.c:P`` reaches them. The benchmark
uses that to give every instance its own host (and so its own keep-alive connection, as with real
instances) while one listener serves them all. Several processes can serve the same ports:
``SO_REUSEPORT`` is set on every listener and the kernel spreads connections over the processes.

The victim ports are separate listeners for the instances whose stop the benchmark times (give them
to one process only). Every process reads commands from stdin, one JSON object per line, and answers
each with one JSON line on stdout:

* ``{"cmd": "stop", "kind": "http"}``: close the HTTP victim listeners and their connections;
  ``{"cmd": "start", "kind": "http"}`` opens them again on the same ports (``kind``: http or grpc).
  The answer's ``t`` is ``time.monotonic()`` once done (CLOCK_MONOTONIC, shared by all processes).
* ``{"cmd": "count"}``: connections accepted so far: ``http`` counts accepted HTTP connections,
  ``grpc`` distinct (service, peer) pairs seen by ``Check`` since the last ``reset`` (a new gRPC
  connection of an instance is a new client port, so a new pair).
* ``{"cmd": "reset"}``: forget the gRPC pairs seen (between two hubs).

Every process prints ``{"ready": pid}`` once it listens, and exits when stdin closes or on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
END_OF_HEAD = b"\r\n\r\n"


COUNTS = {"http": 0}  # HTTP connections accepted by this process


class HealthProtocol(asyncio.Protocol):
    """Answers each request head with RESPONSE and keeps the connection open."""

    __slots__ = ("connections", "pending", "transport")

    def __init__(self, connections: set[HealthProtocol]) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending = b""
        self.connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connections.add(self)
        COUNTS["http"] += 1

    def data_received(self, data: bytes) -> None:
        data = self.pending + data if self.pending else data
        heads = data.count(END_OF_HEAD)
        if heads:
            assert self.transport is not None
            self.transport.write(RESPONSE * heads)
            data = data[data.rfind(END_OF_HEAD) + len(END_OF_HEAD) :]
        self.pending = data

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)


def listening_socket(port: int) -> socket.socket:
    """A TCP socket on 0.0.0.0:``port`` with SO_REUSEADDR and SO_REUSEPORT, listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


class HttpListener:
    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None
        self.connections: set[HealthProtocol] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: HealthProtocol(self.connections), sock=listening_socket(self.port), backlog=4096
        )

    async def stop(self) -> None:
        """Close the listener and abort its connections: the port refuses from now on."""
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for protocol in list(self.connections):
            if protocol.transport is not None:
                protocol.transport.abort()
        self.connections.clear()


class CountingHealthServicer(health_aio.HealthServicer):  # type: ignore[misc]
    """grpcio-health-checking's servicer; any service name not set is SERVING; notes (service, peer)."""

    seen: set[tuple[str, str]] = set()

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> health_pb2.HealthCheckResponse:
        self.seen.add((request.service, context.peer()))
        status = self._server_status.get(request.service, health_pb2.HealthCheckResponse.SERVING)
        return health_pb2.HealthCheckResponse(status=status)


class GrpcListener:
    def __init__(self, port: int) -> None:
        self.port = port
        self.server: Any = None

    async def start(self) -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
        servicer = CountingHealthServicer()
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        if server.add_insecure_port(f"0.0.0.0:{self.port}") != self.port:
            raise OSError(f"gRPC server could not bind port {self.port}")
        await server.start()
        self.server = server

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop(grace=None)  # cancels RPCs and closes the connections at once


def _ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p.strip()]


def _emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    shared: list[HttpListener | GrpcListener] = []
    if args.http_port:
        shared.append(HttpListener(args.http_port))
    if args.grpc_port:
        shared.append(GrpcListener(args.grpc_port))
    victims: dict[str, list[HttpListener | GrpcListener]] = {
        "http": [HttpListener(p) for p in _ports(args.victim_http_ports)],
        "grpc": [GrpcListener(p) for p in _ports(args.victim_grpc_ports)],
    }
    for listener in [*shared, *victims["http"], *victims["grpc"]]:
        await listener.start()
    _emit(ready=os.getpid())

    async def commands() -> None:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            request = json.loads(line)
            cmd = request["cmd"]
            if cmd in ("stop", "start"):
                for listener in victims[request["kind"]]:
                    await (listener.stop() if cmd == "stop" else listener.start())
            elif cmd == "reset":
                CountingHealthServicer.seen.clear()
            _emit(done=cmd, t=time.monotonic(), http=COUNTS["http"], grpc=len(CountingHealthServicer.seen))
        stopping.set()  # stdin closed: the benchmark is gone

    reader_task = asyncio.create_task(commands())
    await stopping.wait()
    reader_task.cancel()
    for listener in [*shared, *victims["http"], *victims["grpc"]]:
        await listener.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-port", type=int, default=0, help="shared HTTP port (0: none)")
    parser.add_argument("--grpc-port", type=int, default=0, help="shared gRPC port (0: none)")
    parser.add_argument("--victim-http-ports", default="", help="comma-separated HTTP victim ports")
    parser.add_argument("--victim-grpc-ports", default="", help="comma-separated gRPC victim ports")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
