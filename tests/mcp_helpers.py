"""MCP sessions for tests, through the mcp package's client: with the server in this process, or with the
real ``kk-etcd-mcp serve`` process over stdio, streamable HTTP or SSE.

``served`` is for tests of what the tools, resources and prompts do: the server ``serve`` builds, from
the same settings, run in the test's own process and event loop (no transport, no process start).
Tests of the transports, the CLI, signals, start-up and what a process logs use the process helpers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx2
from mcp import Client
from mcp.client.extension import ClientExtension
from mcp.client.session import ElicitationFnT, MessageHandlerFnT
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from kk_etcd_mcp.app.runner import registry_service
from kk_etcd_mcp.etcd.embedded import accepts_connections, free_port
from kk_etcd_mcp.mcp_server.app import build_server
from kk_etcd_mcp.mcp_server.identity import STDIO, ClientIdentity, acting_as
from kk_etcd_mcp.mcp_server.live import LiveUpdates
from kk_etcd_mcp.settings import load_settings


def server_env(endpoint: str, **settings: str) -> dict[str, str]:
    """The environment for a server process: ours minus any KK_ETCD_* leaking in, plus the given settings
    (confirm_destructive defaults to "allow" here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KK_ETCD_")}
    env["KK_ETCD_ENDPOINTS"] = endpoint
    env["KK_ETCD_REQUEST_TIMEOUT"] = env.get("KK_TEST_REQUEST_TIMEOUT", "3")
    # The test client cannot answer confirmations; tests of confirmations set it themselves.
    env["KK_ETCD_CONFIRM_DESTRUCTIVE"] = "allow"
    for name, value in settings.items():
        env[f"KK_ETCD_{name.upper()}"] = value
    return env


@asynccontextmanager
async def served(
    endpoint: str,
    *,
    identity: ClientIdentity = STDIO,
    elicitation: ElicitationFnT | None = None,
    mode: str = "auto",
    message_handler: MessageHandlerFnT | None = None,
    extensions: list[ClientExtension] | None = None,
    **settings: str,
) -> AsyncIterator[Client]:
    """A client session with the server ``kk-etcd-mcp serve`` would build, running in this process.

    Settings are read as the process reads them (``server_env``, then ``load_settings``), and the server
    is composed as ``serve`` composes it: the etcd client, the registry service with its hub (unless
    ``hub="false"``), live updates, ``build_server``. Only the transport is left out: the client talks to
    the server in memory (``mode``: "auto", the 2026 protocol; "legacy", the handshake era).

    ``identity``: whose calls these are. A transport says who its client is (stdio: the user who started
    the server, with every scope); here there is no transport, so the session runs as the identity given,
    stdio's unless a test needs another scope. ``elicitation`` answers confirmations (None: the client
    cannot be asked, and ``confirm_destructive`` decides). ``message_handler`` gets what the server sends
    unasked (resource updates, log messages). ``extensions``: what the client declares (MCP Apps, ...).
    """
    config = load_settings(env=server_env(endpoint, **settings))
    with acting_as(identity):  # the server's tasks start inside: they inherit the identity
        async with AsyncExitStack() as stack:
            etcd = await stack.enter_async_context(config.etcd_client())
            live = LiveUpdates(etcd)
            registry = await stack.enter_async_context(registry_service(config, etcd, live.hub_transition))
            server = build_server(config, etcd, registry, live)
            await stack.enter_async_context(live.run())
            yield await stack.enter_async_context(
                Client(
                    server,
                    elicitation_callback=elicitation,
                    message_handler=message_handler,
                    mode=mode,
                    extensions=extensions,
                )
            )


@asynccontextmanager
async def stdio_client(
    endpoint: str, *args: str, env: Mapping[str, str] | None = None, **settings: str
) -> AsyncIterator[Client]:
    """A client session with ``kk-etcd-mcp serve`` started over stdio (stderr passes through)."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kk_etcd_mcp", "serve", *args],
        env=dict(env) if env is not None else server_env(endpoint, **settings),
    )
    async with Client(params) as client:
        yield client


@dataclass
class HttpServer:
    process: subprocess.Popen[bytes]
    url: str
    port: int


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        if accepts_connections("127.0.0.1", port, timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"server did not listen on port {port} within {timeout}s")


@contextmanager
def http_server(
    endpoint: str, transport: str = "streamable-http", *args: str, stderr: IO[Any] | None = None, **settings: str
) -> Iterator[HttpServer]:
    """``kk-etcd-mcp serve`` over an HTTP transport on a free loopback port; stopped with SIGTERM.

    ``stderr``: a file to capture the server's logs in (default: they pass through).
    """
    port = free_port()
    env = server_env(endpoint, transport=transport, port=str(port), **settings)
    process = subprocess.Popen([sys.executable, "-m", "kk_etcd_mcp", "serve", *args], env=env, stderr=stderr)
    try:
        _wait_for_port(port, process)
        path = "/sse" if transport == "sse" else "/mcp"
        yield HttpServer(process=process, url=f"http://127.0.0.1:{port}{path}", port=port)
    finally:
        stop_process(process)


@contextmanager
def serve_process(env: Mapping[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``kk-etcd-mcp serve`` as a bare process: stdin kept open (nothing sent), stderr into ``log``.
    Killed if still running when the block ends."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "kk_etcd_mcp", "serve", *args], env=dict(env), stdin=subprocess.PIPE, stderr=stderr
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdin is not None:
            process.stdin.close()


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it does not exit within ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@asynccontextmanager
async def http_client(url: str, token: str | None = None) -> AsyncIterator[Client]:
    """A client session over streamable HTTP, with a bearer token when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


@asynccontextmanager
async def sse_session(url: str, token: str | None = None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with Client(sse_client(url, headers=headers)) as client:
        yield client


class ToolFailed(AssertionError):
    pass


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; returns its structured result."""
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        raise ToolFailed(f"{tool} failed: {error_text(result)}")
    assert result.structured_content is not None, f"{tool} returned no structured content"
    return result.structured_content


async def call_error(client: Client, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail; returns the error text the model would read."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} unexpectedly succeeded: {result.structured_content}"
    text = error_text(result)
    assert "Traceback" not in text
    return text


def error_text(result: CallToolResult) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
