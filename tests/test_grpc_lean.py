"""The hub's own gRPC health client (``registry/checkers/grpc_lean.py`` on ``http2.py``) against servers
it did not come from: etcd's (grpc-go, whose HPACK uses Huffman codes and the dynamic table), grpc.aio
servers that send GOAWAY on a schedule or abort with a message, and a TLS server without HTTP/2.

tests/test_checkers.py covers the rest through ``probe_grpc`` (statuses, TLS, timeouts, refused,
reset and garbage targets, restarts, cancellation).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from health_servers import HOST, free_port
from test_checkers import grpc_check

from kk_etcd_mcp.registry.checkers import Prober, probe_grpc
from kk_etcd_mcp.registry.checkers.grpc import open_channel
from kk_etcd_mcp.registry.checkers.grpc_aio import AioHealthChannel
from kk_etcd_mcp.registry.checkers.grpc_lean import LeanHealthChannel
from kk_etcd_mcp.registry.model import CheckOptions, CheckSpec, resolve_check

pytestmark = pytest.mark.anyio


def grpc_spec(addr: str, **options: Any) -> CheckSpec:
    return resolve_check("grpc", addr, CheckOptions(timeout=options.pop("timeout", 2), **options))


@asynccontextmanager
async def grpc_server(options: Sequence[tuple[str, Any]] = (), servicer: Any = None) -> AsyncIterator[str]:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *options])
    health_pb2_grpc.add_HealthServicer_to_server(servicer or health_aio.HealthServicer(), server)
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    try:
        yield f"{HOST}:{port}"
    finally:
        await server.stop(grace=None)


async def test_host_port_targets_get_the_lean_client_and_uris_grpc_aio() -> None:
    assert isinstance(await open_channel(grpc_spec("127.0.0.1:50051")), LeanHealthChannel)
    assert isinstance(await open_channel(grpc_spec("[::1]:50051")), LeanHealthChannel)
    uri = await open_channel(grpc_spec("dns:///localhost:50051"))
    assert isinstance(uri, AioHealthChannel)
    await uri.close()


async def test_a_target_uri_is_checked_through_grpc_aio() -> None:
    async with grpc_server() as addr:
        uri = f"ipv4:{addr}"
        prober = Prober()
        try:
            passing = await prober.check("svc", grpc_spec(uri))
            unknown = await prober.check("svc", grpc_spec(uri, grpc_service="nobody"))
        finally:
            await prober.aclose()
    assert (passing.status, passing.output) == ("passing", f"gRPC check {uri}: SERVING")
    assert (unknown.status, unknown.output) == (
        "critical",
        f"gRPC check {uri} service nobody: NOT_FOUND: the server does not know this service",
    )


async def test_etcd_grpc_go_health_service_is_serving(etcd_endpoint: str) -> None:
    # etcd serves grpc.health.v1 from grpc-go: another HTTP/2 and HPACK implementation than ours.
    addr = urlsplit(etcd_endpoint).netloc
    prober = Prober()
    try:
        for _ in range(3):  # the second and third answers lean on HPACK's dynamic table
            result = await prober.check("etcd", grpc_spec(addr))
            assert (result.status, result.output) == ("passing", f"gRPC check {addr}: SERVING")
        unknown = await prober.check("etcd", grpc_spec(addr, grpc_service="no.such.Service"))
    finally:
        await prober.aclose()
    assert unknown.status == "critical"
    assert unknown.output.endswith("NOT_FOUND: the server does not know this service")


async def test_checks_pass_across_the_servers_goaway() -> None:
    # A server that ends every connection after 300 ms (GOAWAY, then a grace period): a check never
    # fails for it, whether it starts a new connection or meets a closing one.
    options = [("grpc.max_connection_age_ms", 300), ("grpc.max_connection_age_grace_ms", 100)]
    async with grpc_server(options) as addr:
        prober = Prober()
        try:
            results = []
            for _ in range(12):
                results.append(await prober.check("svc", grpc_spec(addr)))
                await anyio.sleep(0.1)
        finally:
            await prober.aclose()
    assert [r.status for r in results] == ["passing"] * 12, [r.output for r in results]


class AbortingServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{request.service} überlastet: 100% busy")


async def test_a_servers_error_message_is_decoded() -> None:
    async with grpc_server(servicer=AbortingServicer()) as addr:
        result = await grpc_check(grpc_spec(addr, grpc_service="orders"))
    assert (result.status, result.output) == (
        "critical",
        f"gRPC check {addr} service orders: RESOURCE_EXHAUSTED: orders überlastet: 100% busy",
    )


async def test_a_tls_server_without_http2_is_named(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)  # offers no ALPN: an HTTPS/1.1 server, say
    server = await asyncio.start_server(lambda r, w: None, HOST, 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await grpc_check(grpc_spec(f"{HOST}:{port}", tls=True, ca_file=str(tmp_path / "ca.pem")))
    finally:
        server.close()
    assert (result.status, result.output) == (
        "critical",
        f"gRPC check {HOST}:{port}: UNAVAILABLE: the server did not negotiate HTTP/2 over TLS (ALPN h2)",
    )


async def test_a_closed_channel_refuses_checks_without_connecting() -> None:
    channel = LeanHealthChannel(HOST, free_port(HOST))
    await channel.close()
    result = await probe_grpc(grpc_spec(f"{HOST}:1"), channel)
    assert (result.status, result.output) == ("critical", f"gRPC check {HOST}:1: Channel is closed.")


class StaleProxy:
    """A TCP proxy to ``upstream``; ``go_stale()`` makes every connection open so far drop (reset) on the
    next bytes the client sends, as a server that closed a kept connection the client still trusts."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.accepted = 0
        self._stale: set[asyncio.StreamWriter] = set()
        self._open: set[asyncio.StreamWriter] = set()

    def go_stale(self) -> None:
        self._stale |= self._open

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._open.add(writer)
        host, _, port = self.upstream.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, client_side: bool) -> None:
            while data := await source.read(65536):
                if client_side and writer in self._stale:
                    writer.transport.abort()
                    up_writer.close()
                    return
                sink.write(data)
            sink.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(pipe, reader, up_writer, True)
            tg.start_soon(pipe, up_reader, writer, False)


async def test_a_request_the_server_never_saw_is_sent_again_on_a_new_connection() -> None:
    async with grpc_server() as addr:
        proxy = StaleProxy(addr)
        server = await asyncio.start_server(proxy.serve, HOST, 0)
        proxied = f"{HOST}:{server.sockets[0].getsockname()[1]}"
        prober = Prober()
        try:
            assert (await prober.check("svc", grpc_spec(proxied))).status == "passing"
            proxy.go_stale()
            result = await prober.check("svc", grpc_spec(proxied))
        finally:
            await prober.aclose()
            server.close()
    assert (result.status, result.output) == ("passing", f"gRPC check {proxied}: SERVING")
    assert proxy.accepted == 2  # the dropped connection, then the one the retry opened


@asynccontextmanager
async def raw_health_server(answer: bytes) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A grpc.aio server whose Health/Check takes and returns raw bytes: ``answer``, whatever was asked;
    the requests it saw are listed."""
    seen: list[bytes] = []

    async def check(request: bytes, context: Any) -> bytes:
        seen.append(request)
        return answer

    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)}
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    try:
        yield f"{HOST}:{port}", seen
    finally:
        await server.stop(grace=None)


def serving_with_padding(size: int) -> bytes:
    """SERVING, then an unknown field of ``size`` bytes, which a HealthCheckResponse parser skips."""
    padding = health_pb2.HealthCheckRequest(service="x" * size).SerializeToString()  # field 1, length-delimited
    return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING).SerializeToString() + (
        b"\x12" + padding[1:]  # the same bytes as field 2
    )


async def test_flow_control_holds_over_many_checks_on_one_connection() -> None:
    # 2 KB each way per check: 200 checks move 400 KB on one connection, six times the 64 KB windows
    # HTTP/2 starts with, so both sides' WINDOW_UPDATEs must be right or the checks stall.
    service = "s" * 2000
    async with raw_health_server(serving_with_padding(2000)) as (addr, seen):
        prober = Prober()
        try:
            for _ in range(200):
                result = await prober.check("svc", grpc_spec(addr, grpc_service=service))
                assert result.status == "passing", result.output
        finally:
            await prober.aclose()
    assert len(seen) == 200
    assert health_pb2.HealthCheckRequest.FromString(seen[-1]).service == service


async def test_an_oversized_answer_is_refused() -> None:
    async with raw_health_server(serving_with_padding(70_000)) as (addr, _):
        result = await grpc_check(grpc_spec(addr))
    assert (result.status, result.output) == (
        "critical",
        f"gRPC check {addr}: UNAVAILABLE: the answer is longer than 65536 bytes",
    )
