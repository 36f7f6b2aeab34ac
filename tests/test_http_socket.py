"""The HTTP transports' connections: what the socket itself must do, read on the server's side of a
real connection (uvicorn in this process, on the listener ``bind_http_socket`` makes)."""

from __future__ import annotations

import logging
import socket

import anyio
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from kk_etcd_mcp.etcd.embedded import free_port
from kk_etcd_mcp.mcp_server.http import HttpServer, bind_http_socket
from kk_etcd_mcp.mcp_server.http.protocol import head_timeout_protocol
from kk_etcd_mcp.mcp_server.http.refusals import RefusalLog
from kk_etcd_mcp.settings import Settings

pytestmark = pytest.mark.anyio


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_connections_send_without_nagle_delay() -> None:
    """TCP_NODELAY on every accepted connection: h11 writes a response's head and body apart, and with
    Nagle the body waited for the client's delayed ACK (40 ms on Linux) on every call."""
    settings = Settings(endpoints=["http://127.0.0.1:2379"], transport="streamable-http", port=free_port())
    listener = bind_http_socket(settings)
    config = uvicorn.Config(
        _ok, http=head_timeout_protocol(10, RefusalLog(logging.getLogger(__name__), 0)), log_config=None, lifespan="off"
    )
    server = HttpServer(config)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve, [listener])
        with anyio.fail_after(30):
            while not server.started:
                await anyio.sleep(0.01)
            async with await anyio.connect_tcp("127.0.0.1", settings.port) as client:
                await client.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert (await client.receive()).startswith(b"HTTP/1.1 200")
                [connection] = server.server_state.connections
                accepted = connection.transport.get_extra_info("socket")
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        server.stop()
    listener.close()
