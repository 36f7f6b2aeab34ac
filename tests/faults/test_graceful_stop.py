"""Fault 7: graceful stop. SIGTERM, SIGINT and stdin EOF (stdio) each stop ``kk-etcd-mcp serve`` within
5 s with exit code 0: its tasks are cancelled, the hub resigns (its election key is gone), the embedded
etcd is stopped. A service using the SDK deletes its registration when it stops.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from health_servers import HttpHealthServer
from mcp_helpers import call, http_client, http_server, server_env, sse_session
from polling import HANG_GUARD, eventually
from registry_helpers import register
from test_tokens_limits import MCP_HEADERS, initialize

from kk_etcd_mcp.errors import UnavailableError
from kk_etcd_mcp.etcd import EtcdClient, prefix_end
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, accepts_connections, free_port
from kk_etcd_mcp.registry import RegistryKeys

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

STOP_WITHIN = 5.0  # what the issue asks of a stop; the measured time is reported


async def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    with anyio.fail_after(HANG_GUARD):
        while not accepts_connections("127.0.0.1", port):
            assert process.poll() is None, f"serve exited early with code {process.returncode}"
            await anyio.sleep(0.1)


async def _answers(etcd: EtcdClient) -> bool:
    try:
        await etcd.current_revision()
    except UnavailableError:
        return False
    return True


async def _keys_under(etcd: EtcdClient, prefix: str) -> list[str]:
    return [kv.key.decode() for kv in (await etcd.range(prefix, prefix_end(prefix))).kvs]


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "stdin EOF"])
async def test_serve_stops_within_5s_resigns_and_stops_its_embedded_etcd(
    tmp_path: Path, stop: str, recovery: Any
) -> None:
    port, peer_port = free_port(), free_port()
    data_dir = tmp_path / "d"
    endpoint = f"http://127.0.0.1:{port}"
    env = server_env(endpoint, embedded_etcd="true", data_dir=str(data_dir), peer_port=str(peer_port))
    keys = RegistryKeys("kk_service/")
    log = tmp_path / "serve.log"
    async with HttpHealthServer() as target:
        process = subprocess.Popen(
            [sys.executable, "-m", "kk_etcd_mcp", "serve"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),  # a file: a pipe nobody reads could fill up and block the server
        )
        try:
            await _wait_listening(port, process)
            async with EtcdClient([endpoint]) as etcd:
                await eventually(lambda: _answers(etcd), "the embedded etcd answers")
                # The hub leads and checks an instance: the stop must end a real term, not an idle one.
                await register(etcd, keys, "web", target.addr)
                with anyio.fail_after(HANG_GUARD):
                    while target.requests < 2 or not await _keys_under(etcd, keys.leader + "/"):
                        await anyio.sleep(0.1)
            stopping = time.monotonic()
            if stop == "stdin EOF":
                assert process.stdin is not None
                process.stdin.close()
            else:
                process.send_signal(getattr(signal, stop))  # stdin stays open: only the signal can stop it
            process.wait(timeout=STOP_WITHIN)
            recovery(f"{stop} → serve exited", time.monotonic() - stopping)
            assert process.stdout is not None
            out, err = process.stdout.read(), log.read_bytes()
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err.decode()
    assert out == b""
    assert b"stopped the embedded etcd" in err
    assert b"Traceback" not in err and b"was destroyed but it is pending" not in err, err.decode()
    assert not accepts_connections("127.0.0.1", port), "the embedded etcd still answers"

    # etcd keeps leases over a restart: a leader key not deleted at the stop would still be there.
    with EmbeddedEtcd(data_dir, port, peer_port, log_file=tmp_path / "after.log") as after:
        async with EtcdClient([after.client_url]) as etcd:
            assert await _keys_under(etcd, keys.leader + "/") == [], "the hub did not resign"
            assert await _keys_under(etcd, keys.registrations) != [], "a persistent registration was lost"


SDK_SERVICE = textwrap.dedent(
    """
    import signal, sys
    import anyio
    from kk_etcd_mcp import ServiceRegistry

    async def main(endpoint: str, root: str, addr: str) -> None:
        # The signals are caught before "registered" is printed: the test signals as soon as it reads it.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with ServiceRegistry([endpoint], prefix=root) as registry:
                async with registry.register("svc", addr, "http", ttl=60):
                    print("registered", flush=True)
                    async for _ in signals:
                        return

    anyio.run(main, *sys.argv[1:])
    """
)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
async def test_a_service_stopped_deletes_its_sdk_registration_at_once(
    etcd_endpoint: str, key_prefix: str, stop: str
) -> None:
    root = f"{key_prefix}kk_service/"
    async with HttpHealthServer() as target, EtcdClient([etcd_endpoint]) as etcd:
        process = subprocess.Popen(
            [sys.executable, "-c", SDK_SERVICE, etcd_endpoint, root, target.addr], stdout=subprocess.PIPE
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == b"registered\n"
            registrations = RegistryKeys(root).registrations
            assert len(await _keys_under(etcd, registrations)) == 1
            process.send_signal(getattr(signal, stop))
            process.wait(timeout=STOP_WITHIN)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0
        # Its lease has a 60 s TTL: gone at once means the SDK revoked it on the way out.
        assert await _keys_under(etcd, registrations) == []


async def test_serve_stops_within_5s_while_etcd_is_frozen(own_etcd: EmbeddedEtcd, recovery: Any) -> None:
    """A stop does not wait for an etcd that does not answer: revoking the hub's lease is bounded."""
    env = server_env(own_etcd.client_url, request_timeout="30")
    process = subprocess.Popen(
        [sys.executable, "-m", "kk_etcd_mcp", "serve"], env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with EtcdClient([own_etcd.client_url]) as etcd:
            with anyio.fail_after(HANG_GUARD):
                while not await _keys_under(etcd, RegistryKeys("kk_service/").leader + "/"):
                    await anyio.sleep(0.1)
        own_etcd.pause()
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=STOP_WITHIN)
        recovery("SIGTERM with etcd frozen → serve exited", time.monotonic() - stopping)
        _, err = process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
        own_etcd.resume()
    assert process.returncode == 0, err.decode()


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_http_serve_stops_within_5s_with_clients_connected(
    etcd_endpoint: str, key_prefix: str, tmp_path: Path, transport: str, recovery: Any
) -> None:
    """Open event streams never end by themselves: the stop must not wait for the clients to leave."""
    log = tmp_path / "serve.log"
    with (
        log.open("wb") as stderr,
        http_server(etcd_endpoint, transport, stderr=stderr, registry_prefix=f"{key_prefix}kk_service/") as server,
    ):
        session = http_client(server.url) if transport == "streamable-http" else sse_session(server.url)
        async with session as client:
            await call(client, "kv_put", key=f"{key_prefix}x", value="1")
            stopping = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(lambda: server.process.wait(STOP_WITHIN))
            recovery(f"SIGTERM ({transport}, a client connected) → serve exited", time.monotonic() - stopping)
    assert server.process.returncode == 0, log.read_text()


async def test_http_serve_stops_within_5s_with_thousands_of_sessions(
    etcd_endpoint: str, tmp_path: Path, recovery: Any
) -> None:
    """mcp ending open sessions one by one would take longer than a stop may (anyio's cancellation of
    their tasks grows faster than their number): the stop does not wait for it."""
    sessions = 4000
    log = tmp_path / "serve.log"
    unlimited = {"http_rate_limit": "0", "http_sessions_per_minute": "0", "http_max_sessions_per_client": "100000"}
    with log.open("wb") as stderr, http_server(etcd_endpoint, stderr=stderr, hub="false", **unlimited) as server:
        opened = await open_sessions(server.url, sessions)
        assert opened == sessions
        stopping = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        await anyio.to_thread.run_sync(lambda: server.process.wait(STOP_WITHIN))
        recovery(f"SIGTERM with {sessions} streamable HTTP sessions open → serve exited", time.monotonic() - stopping)
    assert server.process.returncode == 0
    err = log.read_text()
    assert "Traceback" not in err and "was destroyed but it is pending" not in err


async def open_sessions(url: str, count: int) -> int:
    """Open ``count`` streamable HTTP sessions (initialize, as raw HTTP); how many opened."""
    body = json.dumps(initialize()).encode()
    opened = 0
    limits = httpx2.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx2.AsyncClient(trust_env=False, timeout=60, limits=limits) as http:

        async def one(slots: anyio.Semaphore) -> None:
            nonlocal opened
            async with slots:
                response = await http.post(url, content=body, headers=MCP_HEADERS)
                opened += response.status_code == 200 and "mcp-session-id" in response.headers

        slots = anyio.Semaphore(32)
        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one, slots)
    return opened
