"""``kk-etcd-mcp serve`` over streamable HTTP without our HTTP middleware, for ``kv_latency.py --breakdown``.

    python bench/kk_plain_http.py serve          # the settings from KK_ETCD_* as for kk-etcd-mcp

The app is mcp's own, as ``http_app`` makes it (``mcp_endpoints``), under one step that names every
request's client as the tokenless loopback one (the MCP layer refuses calls from no one) instead of
our guards (``guarded``): the console wrapper, ClientAuth, MetricsRoute, RateLimit, BodyLimit and
SessionLimits. kv_get's server CPU here and in the real server differ by what that middleware costs.
Loopback and benchmarks only: nothing here checks a token or limits a client.
"""

import runpy
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send

import kk_etcd_mcp.mcp_server.http as http
from kk_etcd_mcp.mcp_server.identity import HTTP_WITHOUT_TOKEN, IdentifiedUser
from kk_etcd_mcp.settings import Settings


def plain_http_app(server: MCPServer, settings: Settings, *_: Any, **__: Any) -> ASGIApp:
    app, _ = http.mcp_endpoints(server, settings)
    user = IdentifiedUser(HTTP_WITHOUT_TOKEN)

    async def tokenless(scope: Scope, receive: Receive, send: Send) -> None:
        scope["user"] = user
        await app(scope, receive, send)

    return tokenless


http.http_app = plain_http_app  # make_http_server looks it up at call time
sys.argv[0] = "kk-etcd-mcp"
runpy.run_module("kk_etcd_mcp", run_name="__main__", alter_sys=True)
