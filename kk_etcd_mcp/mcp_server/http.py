"""HTTP transports (SSE, streamable HTTP): Host/Origin checks, bearer token, uvicorn without its own signals."""

import contextlib
import hmac
import logging
from collections.abc import Iterator

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..settings import Settings, is_loopback

log = logging.getLogger(__name__)

STREAMABLE_HTTP_PATH = "/mcp"
SSE_PATH = "/sse"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class BearerTokenMiddleware:
    """Answers 401 to any HTTP request without ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scheme, _, given = Headers(scope=scope).get("authorization", "").partition(" ")
            # The scheme is case-insensitive (RFC 7235); the token compare is constant-time.
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._expected):
                response = JSONResponse(
                    {
                        "error": "unauthorized",
                        "message": "send the configured token as 'Authorization: Bearer <token>'",
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="kk-etcd-mcp"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
    app: ASGIApp
    if settings.transport == "sse":
        app = server.sse_app(sse_path=SSE_PATH, transport_security=security, host=settings.host)
    else:
        app = server.streamable_http_app(
            streamable_http_path=STREAMABLE_HTTP_PATH, transport_security=security, host=settings.host
        )
    if settings.http_token is not None:
        app = BearerTokenMiddleware(app, settings.http_token.get_secret_value())
    return app


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
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
    )
    path = SSE_PATH if settings.transport == "sse" else STREAMABLE_HTTP_PATH
    auth = "bearer token required" if settings.http_token else "no token (loopback only)"
    log.info(
        "serving MCP over %s at http://%s:%d%s (%s)",
        settings.transport,
        settings.host,
        settings.port,
        path,
        auth,
    )
    return HttpServer(config)
