"""The protocol floor for bench/kv_latency.py: a bare MCPServer with one tool that does nothing.

    python bench/noop_server.py stdio
    python bench/noop_server.py http --port 8765     # streamable HTTP at http://127.0.0.1:8765/mcp
    python bench/noop_server.py stdio --tools 60     # 59 more no-op tools (bench/startup.py's baseline)

Served the way ``kk-etcd-mcp serve`` serves (same MCPServer class, same streamable_http_app defaults,
uvicorn without access log), so the difference to kv_get is our own work plus the etcd round trip.

For ``kv_latency.py --breakdown`` only (these import kk_etcd_mcp; the floor itself does not):
``--shape`` adds ``kv_get_shape``, kv_get's signature and result model registered the way kv_get is,
returning a fixed entry without touching etcd, and ``kv_get_paused``, the same after a 1 ms
``asyncio.sleep`` (no I/O at all); with ``--etcd URL`` also ``kv_get_bare``, the same reading the key
with our EtcdClient. Those two show what a pause in the middle of a call costs a bare MCPServer on each
transport, next to what it costs kk-etcd-mcp. ``--kk-stdio`` serves stdio through kk-etcd-mcp's own
stdin reader (kk_etcd_mcp.mcp_server.stdio) instead of mcp's.
"""

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Iterator
from typing import Annotated, Any

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from pydantic import Field

Key = Annotated[str, Field(description="etcd key, e.g. 'app/db/url'.")]  # kv_get's parameters
Revision = Annotated[int, Field(description="Read as of this revision; 0 = latest.")]
PAUSE = 0.001  # seconds: epoll's timeouts are whole milliseconds, so a shorter sleep lasts this long too


def build(shape: bool = False, tools: int = 1, etcd: str | None = None) -> MCPServer:
    server = MCPServer("noop", version="0")

    @server.tool()
    async def noop() -> str:
        """Does nothing."""
        return "ok"

    for i in range(2, tools + 1):
        server.add_tool(noop, name=f"noop_{i}")
    if shape:
        _add_shape_tools(server, etcd)
    return server


def _add_shape_tools(server: MCPServer, etcd_url: str | None) -> None:
    from kv_latency import GET_KEY, VALUES

    from kk_etcd_mcp.config_center.models import KvEntry
    from kk_etcd_mcp.config_center.service import entry
    from kk_etcd_mcp.etcd.types import KeyValue
    from kk_etcd_mcp.mcp_server.scopes import install_scope_guard
    from kk_etcd_mcp.mcp_server.toolset import ToolRegistrar

    canned = KeyValue(GET_KEY.encode(), VALUES["text"].encode(), create_revision=2, mod_revision=2, version=1)

    async def kv_get_shape(
        key: Key,
        revision: Revision = 0,
    ) -> KvEntry:
        """kv_get's signature and result, without etcd: the value is fixed."""
        return entry(canned)

    async def kv_get_paused(
        key: Key,
        revision: Revision = 0,
    ) -> KvEntry:
        """kv_get's signature and result, after a pause without I/O: the value is fixed."""
        await asyncio.sleep(PAUSE)
        return entry(canned)

    tools = ToolRegistrar(server, read_only=False)
    tools.query("kv_get without etcd")(kv_get_shape)
    tools.query("kv_get without etcd, paused")(kv_get_paused)
    required = {"kv_get_shape": "read", "kv_get_paused": "read"}
    if etcd_url is not None:
        tools.query("kv_get from etcd on a bare MCPServer")(_bare_get(etcd_url))
        required["kv_get_bare"] = "read"
    # As in kk-etcd-mcp: the request's identity (HTTP: the tokenless loopback one, set by _tokenless) made
    # current for the call, which kv_get's wrapper checks.
    install_scope_guard(server, required)


def _bare_get(etcd_url: str) -> Any:
    """``kv_get_bare``: kv_get's signature and result, the key read with our EtcdClient (opened on first use)."""
    from kk_etcd_mcp.config_center.models import KvEntry
    from kk_etcd_mcp.config_center.service import entry
    from kk_etcd_mcp.errors import NotFoundError
    from kk_etcd_mcp.etcd import EtcdClient

    clients: list[EtcdClient] = []

    async def kv_get_bare(
        key: Key,
        revision: Revision = 0,
    ) -> KvEntry:
        """kv_get's signature and result, read from etcd by a bare MCPServer."""
        if not clients:
            clients.append(await EtcdClient([etcd_url]).__aenter__())  # the server's whole life
        found = await clients[0].get(key, revision=revision)
        if found is None:
            raise NotFoundError(f"no key {key!r}")
        return entry(found)

    return kv_get_bare


class _HttpServer(uvicorn.Server):
    """uvicorn, but a SIGTERM ends serve() normally instead of being re-raised (a profiler can then write)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        def stop(signum: int, frame: object) -> None:
            self.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


async def _run_http(server: MCPServer, port: int, shape: bool) -> None:
    app: Any = server.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
    if shape:  # kv_get's wrapper refuses a caller no transport named; kk-etcd-mcp names a tokenless loopback one
        app = _tokenless(app)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    await _HttpServer(config).serve()


def _tokenless(app: Any) -> Any:
    from kk_etcd_mcp.mcp_server.identity import HTTP_WITHOUT_TOKEN, IdentifiedUser

    user = IdentifiedUser(HTTP_WITHOUT_TOKEN)

    async def named(scope: Any, receive: Any, send: Any) -> None:
        scope["user"] = user
        await app(scope, receive, send)

    return named


async def _run_kk_stdio(server: MCPServer) -> None:
    from kk_etcd_mcp.mcp_server.stdio import run_stdio  # type: ignore[import-not-found, unused-ignore]

    await run_stdio(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("transport", choices=["stdio", "http"])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--shape", action="store_true", help="also offer kv_get_shape (imports kk_etcd_mcp)")
    parser.add_argument("--etcd", help="with --shape: also offer kv_get_bare, reading from this etcd")
    parser.add_argument("--kk-stdio", action="store_true", help="serve stdio with kk-etcd-mcp's stdin reader")
    parser.add_argument("--tools", type=int, default=1, help="no-op tools in all (default 1)")
    args = parser.parse_args()
    server = build(shape=args.shape, tools=args.tools, etcd=args.etcd)
    runner: Any
    if args.transport == "http":
        anyio.run(_run_http, server, args.port, args.shape)
    else:
        runner = _run_kk_stdio if args.kk_stdio else MCPServer.run_stdio_async
        anyio.run(runner, server)


if __name__ == "__main__":
    main()
