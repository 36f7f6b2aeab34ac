"""HTTP transports (SSE, streamable HTTP): Host/Origin checks, named bearer tokens, request limits.

Each HTTP request passes, outermost first:

1. ``ClientAuth``: finds the client's identity from its bearer token (403 without a valid one),
   or names it ``http`` (every scope) when no tokens are configured (loopback only);
2. ``RateLimit``: a token bucket per client for MCP POSTs (429 with Retry-After);
3. ``BodyLimit``: at most ``http_max_body_bytes`` of body (413), counted as it streams;
4. mcp's app, with its DNS-rebinding checks (421/403).

Every refusal is a JSON ``{"error", "message"}`` and happens before the MCP message is read, so
nothing is done. uvicorn runs without its own signal handlers: our runner stops it.
"""

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Iterator

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp

from ...errors import StartupError
from ...holders import port_holder
from ...logs import library_level
from ...settings import Settings, is_loopback
from .auth import ClientAuth
from .limits import BodyLimit, RateLimit

log = logging.getLogger(__name__)

STREAMABLE_HTTP_PATH = "/mcp"
SSE_PATH = "/sse"
GRACEFUL_SHUTDOWN_SECONDS = 2  # a stop ends within 5 s (issue 5), whatever clients stay connected
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: only loopback names, the bound host and configured extras pass."""
    names = list(_LOOPBACK_HOSTS)
    if not is_loopback(settings.host) and settings.host not in ("0.0.0.0", "::"):
        names.append(settings.host)
    hosts = [f"{name}:*" for name in names] + [*names, *settings.allowed_hosts]
    origins = [f"{scheme}://{name}:*" for name in names for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[*origins, *settings.allowed_origins],
    )


def http_app(server: MCPServer, settings: Settings) -> ASGIApp:
    security = transport_security(settings)
    limit = settings.http_max_body_bytes
    app: ASGIApp
    if settings.transport == "sse":
        app = server.sse_app(
            sse_path=SSE_PATH, transport_security=security, host=settings.host, max_request_body_size=limit
        )
    else:
        app = server.streamable_http_app(
            streamable_http_path=STREAMABLE_HTTP_PATH,
            transport_security=security,
            host=settings.host,
            max_request_body_size=limit,
        )
    app = BodyLimit(app, limit)
    tokens = settings.bearer_tokens()
    if settings.http_rate_limit > 0:
        app = RateLimit(app, settings.http_rate_limit, settings.http_rate_burst, by_token=bool(tokens))
    return ClientAuth(app, tokens)


def bind_http_socket(settings: Settings) -> socket.socket:
    """The listening socket, bound before anything else starts: a taken port is one clear line at once."""
    host = settings.host.strip("[]")
    try:
        family = socket.getaddrinfo(host, settings.port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, settings.port), family=family)  # SO_REUSEADDR, as uvicorn sets it
    except OSError as exc:
        reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
        if exc.errno == errno.EADDRINUSE:
            holder = port_holder(settings.port)
            reason += f", by {holder.describe()}" if holder else ""
        raise StartupError(
            f"cannot listen on {settings.host}:{settings.port}: {reason}; stop what uses it, or choose another "
            "host or port (--host/--port, KK_ETCD_HOST/KK_ETCD_PORT)."
        ) from None


class HttpServer(uvicorn.Server):
    """uvicorn's server, leaving signals to our runner so shutdown runs our cleanup first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def stop(self) -> None:
        self.should_exit = True


def make_http_server(server: MCPServer, settings: Settings) -> HttpServer:
    config = uvicorn.Config(
        http_app(server, settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep our stderr logging
        log_level=library_level(settings.log_level, settings.library_log_level).lower(),  # see logs.py
        access_log=False,
        lifespan="on",
        # Open event streams never end by themselves: past this, a stop cancels them instead of waiting.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    path = SSE_PATH if settings.transport == "sse" else STREAMABLE_HTTP_PATH
    tokens = settings.bearer_tokens()
    auth = (
        "bearer tokens: " + ", ".join(f"{t.name} ({t.scope})" for t in tokens) if tokens else "no token (loopback only)"
    )
    log.info(
        "serving MCP over %s at http://%s:%d%s (%s)",
        settings.transport,
        settings.host,
        settings.port,
        path,
        auth,
    )
    return HttpServer(config)
