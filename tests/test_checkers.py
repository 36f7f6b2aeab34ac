"""Probes against real servers: status rules, output cap, TLS, misbehaving targets, channel reuse.

No test asserts on elapsed time; ``HANG_GUARD`` only fails a probe that never returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import grpc
import pytest
import trustme
from health_servers import (
    GrpcHealthServer,
    HttpHealthServer,
    RawTcpServer,
    established_connections,
    server_ssl_context,
)
from polling import HANG_GUARD, eventually

from kk_etcd_mcp.etcd.embedded import free_port
from kk_etcd_mcp.registry.checkers import CheckResult, Prober, probe_grpc, probe_http, probe_tcp
from kk_etcd_mcp.registry.checkers.grpc import open_channel
from kk_etcd_mcp.registry.checkers.result import OUTPUT_LIMIT, cap_output
from kk_etcd_mcp.registry.model import CheckSpec

pytestmark = pytest.mark.anyio

GIB = 1024**3


def make_spec(kind: Any, addr: str, **fields: Any) -> CheckSpec:
    """Timeout 1 s and interval = timeout unless given."""
    fields.setdefault("timeout", 1.0)
    fields.setdefault("interval", fields["timeout"])
    return CheckSpec(type=kind, addr=addr, **fields)


def http_spec(url: str, **fields: Any) -> CheckSpec:
    return make_spec("http", url, **fields)


def grpc_spec(addr: str, **fields: Any) -> CheckSpec:
    return make_spec("grpc", addr, **fields)


def tcp_spec(addr: str) -> CheckSpec:
    return make_spec("tcp", addr)


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server_chain: Path
    server_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("checkers-pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    pki = Pki(base / "ca.pem", base / "server.pem", base / "server-key.pem")
    ca.cert_pem.write_to_path(str(pki.ca_file))
    pki.server_chain.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(pki.server_key))
    return pki


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    async with Prober() as owned:
        yield owned


@pytest.fixture
async def http_server() -> AsyncIterator[HttpHealthServer]:
    async with HttpHealthServer() as server:
        yield server


@pytest.fixture
async def grpc_server() -> AsyncIterator[GrpcHealthServer]:
    async with GrpcHealthServer() as server:
        yield server


async def http_check(session: aiohttp.ClientSession, spec: CheckSpec) -> CheckResult:
    with anyio.fail_after(HANG_GUARD):
        return await probe_http(spec, session)


# --- output cap ------------------------------------------------------------------------------


def test_cap_output_counts_utf8_bytes_and_never_splits_a_character() -> None:
    assert cap_output("abc") == "abc"
    assert cap_output("x" * 5000) == "x" * OUTPUT_LIMIT
    capped = cap_output("é" * 3000)  # 2 bytes each
    assert capped == "é" * (OUTPUT_LIMIT // 2)
    odd = cap_output("a" + "é" * 3000)  # the cut falls inside an "é": it is dropped, not mangled
    assert odd == "a" + "é" * ((OUTPUT_LIMIT - 1) // 2)
    assert len(odd.encode()) <= OUTPUT_LIMIT


# --- HTTP ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [(200, "passing"), (204, "passing"), (299, "passing"), (429, "warning"), (500, "critical"), (404, "critical")],
)
async def test_http_status_rules(
    session: aiohttp.ClientSession, http_server: HttpHealthServer, code: int, expected: str
) -> None:
    http_server.status = code
    http_server.body = b"" if code == 204 else b"body text"
    result = await http_check(session, http_spec(http_server.check_url))
    assert result.status == expected
    assert result.output.startswith(f"HTTP GET {http_server.check_url}: {code}")
    assert result.latency > 0
    assert http_server.requests == 1


async def test_http_output_is_status_line_then_body_capped_at_4kb(
    session: aiohttp.ClientSession, http_server: HttpHealthServer
) -> None:
    http_server.body = "ok " + "x" * 10_000
    result = await http_check(session, http_spec(http_server.check_url))
    line = f"HTTP GET {http_server.check_url}: 200 OK Output: "
    assert result.output == line + ("ok " + "x" * 10_000)[:OUTPUT_LIMIT]

    http_server.status, http_server.body = 503, "down: database unreachable"
    result = await http_check(session, http_spec(http_server.check_url))
    assert result == CheckResult(
        "critical",
        f"HTTP GET {http_server.check_url}: 503 Service Unavailable Output: down: database unreachable",
        result.latency,
    )


async def test_http_body_cut_inside_a_character_and_binary_body(
    session: aiohttp.ClientSession, http_server: HttpHealthServer
) -> None:
    http_server.body = "a" + "é" * 5000
    result = await http_check(session, http_spec(http_server.check_url))
    body = result.output.split(" Output: ", 1)[1]
    assert body == "a" + "é" * ((OUTPUT_LIMIT - 1) // 2)

    http_server.body = bytes(range(256)) * 40  # not UTF-8: replaced, still capped
    result = await http_check(session, http_spec(http_server.check_url))
    body = result.output.split(" Output: ", 1)[1]
    assert result.status == "passing"
    assert len(body.encode()) <= OUTPUT_LIMIT


async def test_http_redirect_is_not_followed(session: aiohttp.ClientSession, http_server: HttpHealthServer) -> None:
    async with HttpHealthServer() as elsewhere:
        http_server.status, http_server.body = 302, b""
        http_server.headers = {"Location": elsewhere.check_url}
        result = await http_check(session, http_spec(http_server.check_url))
    assert result == CheckResult(
        "critical",
        f"HTTP GET {http_server.check_url}: 302 Found (redirect to {elsewhere.check_url} not followed)",
        result.latency,
    )
    assert elsewhere.requests == 0


async def test_http_keepalive_reuses_one_connection(
    session: aiohttp.ClientSession, http_server: HttpHealthServer
) -> None:
    for _ in range(3):
        assert (await http_check(session, http_spec(http_server.check_url))).status == "passing"
    assert len(set(http_server.peers)) == 1


async def test_http_connection_refused(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{free_port()}/KKHealthCheck"
    result = await http_check(session, http_spec(url))
    assert result == CheckResult("critical", f"HTTP GET {url}: connection refused", result.latency)


async def test_http_slow_answer_times_out(session: aiohttp.ClientSession, http_server: HttpHealthServer) -> None:
    http_server.delay = 5
    result = await http_check(session, http_spec(http_server.check_url, timeout=1))
    assert result == CheckResult("critical", f"HTTP GET {http_server.check_url}: timed out after 1s", result.latency)
    http_server.delay = 0
    assert (await http_check(session, http_spec(http_server.check_url))).status == "passing"


async def test_http_huge_body_reads_4kb_and_drops_the_connection(
    session: aiohttp.ClientSession, http_server: HttpHealthServer
) -> None:
    http_server.stream_bytes = GIB
    result = await http_check(session, http_spec(http_server.check_url))
    assert result.status == "passing"
    assert result.output == f"HTTP GET {http_server.check_url}: 200 OK Output: " + "\x00" * OUTPUT_LIMIT
    # The server stops when its writes fail; it got no further than socket buffers hold.
    await eventually(lambda: established_connections(http_server.port) == 0, "huge-body connection closed")
    assert http_server.bytes_sent < 64 * 1024**2
    print(f"huge body: the server got {http_server.bytes_sent} bytes out before the probe closed")

    # The pool was not poisoned: the next check is clean, on a new connection.
    http_server.stream_bytes = None
    http_server.status = 500
    result = await http_check(session, http_spec(http_server.check_url))
    assert result.status == "critical"
    assert result.output.endswith(": 500 Internal Server Error Output: ok")
    assert http_server.peers[-1] != http_server.peers[-2]


async def test_http_huge_error_body_is_critical_and_capped(
    session: aiohttp.ClientSession, http_server: HttpHealthServer
) -> None:
    http_server.status, http_server.stream_bytes = 500, GIB
    result = await http_check(session, http_spec(http_server.check_url))
    assert result.status == "critical"
    assert len(result.output.encode()) < OUTPUT_LIMIT + 200
    await eventually(lambda: established_connections(http_server.port) == 0, "huge-body connection closed")
    assert http_server.bytes_sent < 64 * 1024**2


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("silent", "timed out after 1s"),
        ("reset", "connection reset by peer"),
        ("garbage", "invalid response"),
    ],
)
async def test_http_misbehaving_targets_are_critical(
    session: aiohttp.ClientSession, behaviour: Any, expected: str
) -> None:
    async with RawTcpServer(behaviour) as target:
        result = await http_check(session, http_spec(target.url))
    assert result.status == "critical"
    assert result.output.startswith(f"HTTP GET {target.url}: ")
    assert expected in result.output
    assert len(result.output) < 600


async def test_https_with_the_ca_passes_and_without_it_fails(
    session: aiohttp.ClientSession, pki: Pki, tmp_path: Path
) -> None:
    context = server_ssl_context(pki.server_chain, pki.server_key)
    async with HttpHealthServer(ssl_context=context) as server:
        assert server.check_url.startswith("https://")
        trusted = await http_check(session, http_spec(server.check_url, tls=True, ca_file=str(pki.ca_file)))
        assert trusted.status == "passing", trusted.output

        untrusted = await http_check(session, http_spec(server.check_url, tls=True))
        assert untrusted.status == "critical"
        assert "TLS certificate not trusted" in untrusted.output

        other_ca = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other_ca))
        wrong = await http_check(session, http_spec(server.check_url, tls=True, ca_file=str(other_ca)))
        assert wrong.status == "critical"
        assert "TLS certificate not trusted" in wrong.output

        missing = await http_check(session, http_spec(server.check_url, tls=True, ca_file=str(tmp_path / "no.pem")))
        assert missing.status == "critical"
        assert "cannot load CA file" in missing.output

        plain_url = server.check_url.replace("https://", "http://")
        mismatch = await http_check(session, http_spec(plain_url, tls=True))
        assert mismatch.status == "critical"
        assert "not https://" in mismatch.output


async def test_http_server_restarts_on_the_same_port(
    session: aiohttp.ClientSession, http_server: HttpHealthServer
) -> None:
    spec = http_spec(http_server.check_url)
    assert (await http_check(session, spec)).status == "passing"
    await http_server.stop()
    assert (await http_check(session, spec)).output.endswith("connection refused")
    await http_server.start()
    assert (await http_check(session, spec)).status == "passing"


# --- gRPC ------------------------------------------------------------------------------------


async def grpc_check(spec: CheckSpec) -> CheckResult:
    """A probe on a channel of its own (the Prober tests cover reuse)."""
    channel = await open_channel(spec)
    try:
        with anyio.fail_after(HANG_GUARD):
            return await probe_grpc(spec, channel)
    finally:
        await channel.close()


async def test_grpc_serving_and_not_serving(grpc_server: GrpcHealthServer) -> None:
    result = await grpc_check(grpc_spec(grpc_server.addr))
    assert result == CheckResult("passing", f"gRPC check {grpc_server.addr}: SERVING", result.latency)

    await grpc_server.set_status("orders", "NOT_SERVING")
    result = await grpc_check(grpc_spec(grpc_server.addr, grpc_service="orders"))
    assert result == CheckResult(
        "critical", f"gRPC check {grpc_server.addr} service orders: NOT_SERVING", result.latency
    )
    await grpc_server.set_status("orders", "SERVING")
    assert (await grpc_check(grpc_spec(grpc_server.addr, grpc_service="orders"))).status == "passing"

    await grpc_server.set_status("legacy", "UNKNOWN")
    result = await grpc_check(grpc_spec(grpc_server.addr, grpc_service="legacy"))
    assert result.status == "critical"
    assert result.output.endswith(": UNKNOWN")


async def test_grpc_unknown_service_is_critical(grpc_server: GrpcHealthServer) -> None:
    result = await grpc_check(grpc_spec(grpc_server.addr, grpc_service="nobody"))
    assert result.status == "critical"
    assert result.output == (
        f"gRPC check {grpc_server.addr} service nobody: NOT_FOUND: the server does not know this service"
    )


async def test_grpc_server_without_health_service_is_critical() -> None:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        result = await grpc_check(grpc_spec(f"127.0.0.1:{port}"))
    finally:
        await server.stop(grace=None)
    assert result.status == "critical"
    assert "UNIMPLEMENTED" in result.output


async def test_grpc_unreachable_and_misbehaving_targets_are_critical(http_server: HttpHealthServer) -> None:
    refused = await grpc_check(grpc_spec(f"127.0.0.1:{free_port()}"))
    assert refused.status == "critical"
    assert "UNAVAILABLE" in refused.output

    async with RawTcpServer("silent") as silent:
        result = await grpc_check(grpc_spec(silent.addr))
    assert result.status == "critical"
    assert "timed out after 1s" in result.output

    async with RawTcpServer("garbage") as garbage:
        result = await grpc_check(grpc_spec(garbage.addr))
    assert result.status == "critical"
    assert "UNAVAILABLE" in result.output or "timed out" in result.output

    async with RawTcpServer("reset") as reset:
        result = await grpc_check(grpc_spec(reset.addr))
    assert result.status == "critical"

    # An HTTP/1.1 server answering an HTTP/2 client.
    result = await grpc_check(grpc_spec(http_server.addr))
    assert result.status == "critical"
    for outcome in (refused, result):
        assert len(outcome.output.encode()) <= 700


async def test_grpc_probe_on_a_closed_channel_is_critical(grpc_server: GrpcHealthServer) -> None:
    spec = grpc_spec(grpc_server.addr)
    channel = await open_channel(spec)
    await channel.close()
    result = await probe_grpc(spec, channel)
    assert (result.status, result.output) == ("critical", f"gRPC check {grpc_server.addr}: Channel is closed.")


async def test_grpc_tls_with_the_ca_passes_and_without_it_fails(pki: Pki) -> None:
    tls = (pki.server_chain.read_bytes(), pki.server_key.read_bytes())
    async with GrpcHealthServer(tls=tls) as server:
        trusted = await grpc_check(grpc_spec(server.addr, tls=True, ca_file=str(pki.ca_file)))
        assert trusted.status == "passing", trusted.output

        untrusted = await grpc_check(grpc_spec(server.addr, tls=True))
        assert untrusted.status == "critical"
        assert "UNAVAILABLE" in untrusted.output

        plaintext = await grpc_check(grpc_spec(server.addr))
        assert plaintext.status == "critical"


# --- TCP -------------------------------------------------------------------------------------


async def test_tcp_connect() -> None:
    async with HttpHealthServer() as server:
        result = await probe_tcp(tcp_spec(server.addr))
    assert result == CheckResult("passing", f"TCP connect {server.addr}: success", result.latency)

    addr = f"127.0.0.1:{free_port()}"
    result = await probe_tcp(tcp_spec(addr))
    assert result == CheckResult("critical", f"TCP connect {addr}: connection refused", result.latency)

    async with RawTcpServer("silent") as silent:  # the handshake is all a TCP check asks for
        assert (await probe_tcp(tcp_spec(silent.addr))).status == "passing"
        await eventually(lambda: silent.accepted == 1, "the silent server saw the connection")


# --- Prober ----------------------------------------------------------------------------------


async def test_prober_dispatches_by_type(
    prober: Prober, http_server: HttpHealthServer, grpc_server: GrpcHealthServer
) -> None:
    assert (await prober.check("h", http_spec(http_server.check_url))).status == "passing"
    assert (await prober.check("g", grpc_spec(grpc_server.addr))).status == "passing"
    assert (await prober.check("t", tcp_spec(http_server.addr))).status == "passing"
    http_server.status = 429
    assert (await prober.check("h", http_spec(http_server.check_url))).status == "warning"


async def test_prober_keeps_one_grpc_channel_per_instance(prober: Prober, grpc_server: GrpcHealthServer) -> None:
    for _ in range(5):
        assert (await prober.check("svc/a", grpc_spec(grpc_server.addr, interval=5))).status == "passing"
    assert grpc_server.check_calls == 5
    assert len(grpc_server.peers) == 1  # one connection for all five checks
    assert established_connections(grpc_server.port) == 1

    # A new timeout or service name does not need a new connection.
    await grpc_server.set_status("orders", "SERVING")
    changed = grpc_spec(grpc_server.addr, interval=5, timeout=2, grpc_service="orders")
    assert (await prober.check("svc/a", changed)).status == "passing"
    assert len(grpc_server.peers) == 1


async def test_prober_replaces_the_channel_when_the_target_changes(
    prober: Prober, grpc_server: GrpcHealthServer
) -> None:
    async with GrpcHealthServer() as moved:
        assert (await prober.check("svc/a", grpc_spec(grpc_server.addr))).status == "passing"
        assert (await prober.check("svc/a", grpc_spec(moved.addr))).status == "passing"
        assert moved.check_calls == 1
        await eventually(lambda: established_connections(grpc_server.port) == 0, "the old channel closed")
        assert established_connections(moved.port) == 1

        await prober.forget("svc/a")
        await eventually(lambda: established_connections(moved.port) == 0, "forget closed the channel")
        await prober.forget("svc/a")  # forgetting twice is harmless


async def test_prober_channel_recovers_after_a_restart(prober: Prober, grpc_server: GrpcHealthServer) -> None:
    spec = grpc_spec(grpc_server.addr)
    assert (await prober.check("svc/a", spec)).status == "passing"
    await grpc_server.stop()
    down = await prober.check("svc/a", spec)
    assert down.status == "critical"
    assert "UNAVAILABLE" in down.output
    await grpc_server.start()

    async def passing() -> bool:
        return (await prober.check("svc/a", spec)).status == "passing"

    await eventually(passing, "passing again after the restart")


async def test_prober_never_raises_for_a_bad_target(prober: Prober, tmp_path: Path) -> None:
    # CheckSpec refuses unusable addresses; a spec built around that (as by an older version) still never raises.
    unchecked = [CheckSpec.model_construct(type=kind, addr=addr, timeout=1.0, interval=1.0) for kind, addr in [
        ("http", "not a url"), ("tcp", "no-port")]]  # fmt: skip
    bad = [
        *unchecked,
        http_spec("http://127.0.0.1:1/"),
        grpc_spec("127.0.0.1:1", tls=True, ca_file=str(tmp_path / "missing.pem")),
        tcp_spec("host.invalid:80"),
    ]
    for spec in bad:
        with anyio.fail_after(HANG_GUARD):
            result = await prober.check(f"bad/{spec.addr}", spec)
        assert result.status == "critical", result
        assert result.output


async def test_prober_closes_everything(grpc_server: GrpcHealthServer, http_server: HttpHealthServer) -> None:
    prober = Prober()
    await prober.check("g", grpc_spec(grpc_server.addr))
    await prober.check("h", http_spec(http_server.check_url))
    await prober.aclose()
    await eventually(lambda: established_connections(grpc_server.port) == 0, "channels closed")
    await eventually(lambda: established_connections(http_server.port) == 0, "HTTP session closed")
    with pytest.raises(RuntimeError, match="closed"):
        await prober.check("g", grpc_spec(grpc_server.addr))
    await prober.aclose()  # idempotent


async def test_a_cancelled_check_propagates_cancellation(prober: Prober, http_server: HttpHealthServer) -> None:
    http_server.delay = 5
    with anyio.move_on_after(0.2) as scope:
        await prober.check("h", http_spec(http_server.check_url, timeout=3))
    assert scope.cancelled_caught
    async with RawTcpServer("silent") as silent:
        with anyio.move_on_after(0.2) as scope:
            await prober.check("g", grpc_spec(silent.addr, timeout=3))
        assert scope.cancelled_caught


async def test_forget_during_a_check_ends_it_as_critical(prober: Prober) -> None:
    async with RawTcpServer("silent") as silent, anyio.create_task_group() as tg:
        results: list[CheckResult] = []

        async def check() -> None:
            results.append(await prober.check("g", grpc_spec(silent.addr, timeout=5)))

        tg.start_soon(check)
        await eventually(lambda: silent.accepted == 1, "the check connected")
        await prober.forget("g")
    [result] = results
    assert (result.status, result.output) == ("critical", f"gRPC check {silent.addr}: cancelled (channel closed)")
