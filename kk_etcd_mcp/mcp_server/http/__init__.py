"""HTTP transports (SSE, streamable HTTP): Host/Origin checks, named bearer tokens, request limits.

Each HTTP request passes, outermost first:

0. uvicorn's h11 protocol with a deadline for the request's head (``protocol.py``: 408);
1. with OAuth, ``ProtectedResourceMetadataRoutes``: the RFC 9728 metadata, served without a token;
2. ``ClientAuth``: finds the client's identity from its bearer token, a static one or an OAuth
   access token (refused without a valid one: 403, or with OAuth 401 and the challenge; 429 for an
   address that sent too many wrong ones), or names it ``http`` (every scope) when neither is
   configured (loopback only);
3. ``RateLimit``: a token bucket per client for MCP POSTs (429 with Retry-After);
4. ``BodyLimit``: at most ``http_max_body_bytes`` of body (413), arriving within ``http_body_timeout`` (408);
5. with OAuth over streamable HTTP, ``ScopeChallenge``: 403 ``insufficient_scope`` for a tool call
   above the token's scope;
6. ``SessionLimits``: the sessions a client may hold and open (429);
7. mcp's app, with its DNS-rebinding checks (421/403).

``GET /metrics`` (``metrics_route.py``) is answered right after ``ClientAuth``, for a client with scope ``read``.

In front of them all, ``WithConsole`` answers ``/ui/`` with the web console's static files (``console.py``;
setting ``ui``), which need no token: the page is an MCP client of ``/mcp`` and passes every step above.

Every refusal is a JSON ``{"error", "message"}`` (a tool call's 403 a JSON-RPC error) and happens
before the MCP message is handled, so nothing is done; refusals are logged at a bounded rate
(``RefusalLog``). uvicorn runs without its own signal handlers: our runner stops it.
"""

import contextlib
import errno
import functools
import logging
import os
import socket
from collections.abc import Callable, Container, Iterator
from urllib.parse import urlsplit

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.types import ASGIApp
from uvicorn.lifespan.on import LifespanOn

from ...errors import StartupError
from ...holders import port_holder
from ...logs import library_level
from ...settings import Settings, is_loopback
from ..toolset import refuse_beyond_scope
from .auth import ClientAuth
from .console import UI_PATH, WithConsole
from .limits import BodyLimit, RateLimit
from .metrics_route import MetricsRoute
from .oauth import OAuthResource, ProtectedResourceMetadataRoutes
from .protocol import head_timeout_protocol
from .refusals import RefusalLog
from .scope_challenge import RefuseBeyondScope, ScopeChallenge
from .sessions import SessionLimits, open_session_ids

log = logging.getLogger(__name__)

STREAMABLE_HTTP_PATH = "/mcp"
SSE_PATH = "/sse"
GRACEFUL_SHUTDOWN_SECONDS = 2  # a stop ends within 5 s, whatever clients stay connected
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: only loopback names, the bound host, ``public_url``'s and configured extras pass."""
    names = list(_LOOPBACK_HOSTS)
    if not is_loopback(settings.host) and settings.host not in ("0.0.0.0", "::"):
        names.append(settings.host)
    hosts = [f"{name}:*" for name in names] + [*names, *settings.allowed_hosts]
    origins = [f"{scheme}://{name}:*" for name in names for scheme in ("http", "https")]
    if settings.public_url is not None:  # the operator's own name for this server
        public = urlsplit(settings.public_url)
        hosts.append(public.netloc)
        origins.append(f"{public.scheme}://{public.netloc}")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[*origins, *settings.allowed_origins],
    )


def transport_path(settings: Settings) -> str:
    return SSE_PATH if settings.transport == "sse" else STREAMABLE_HTTP_PATH


def oauth_resource(settings: Settings) -> OAuthResource | None:
    return OAuthResource(settings, transport_path(settings)) if settings.oauth else None


def http_app(
    server: MCPServer, settings: Settings, refusals: RefusalLog | None = None, oauth: OAuthResource | None = None
) -> ASGIApp:
    """``oauth``: the OAuth resource server the settings describe (made here when not given)."""
    oauth = oauth or oauth_resource(settings)
    app, open_sessions = mcp_endpoints(server, settings)
    scope_check = functools.partial(refuse_beyond_scope, server)
    return guarded(app, settings, refusals=refusals, oauth=oauth, scope_check=scope_check, open_sessions=open_sessions)


def mcp_endpoints(server: MCPServer, settings: Settings) -> tuple[ASGIApp, Callable[[], Container[str]] | None]:
    """mcp's app for the configured transport (SSE, streamable HTTP, or both for the console beside SSE), and
    how to ask it which streamable HTTP sessions are open (None without streamable HTTP)."""
    security = transport_security(settings)
    limit = settings.http_max_body_bytes
    sse = settings.transport == "sse"
    if not streamable_served(settings):
        return server.sse_app(
            sse_path=SSE_PATH, transport_security=security, host=settings.host, max_request_body_size=limit
        ), None
    streamable_app = server.streamable_http_app(
        streamable_http_path=STREAMABLE_HTTP_PATH,
        transport_security=security,
        host=settings.host,
        max_request_body_size=limit,
        session_idle_timeout=settings.http_session_idle_timeout,
    )
    open_sessions = open_session_ids(server.session_manager)
    if not sse:
        return streamable_app, open_sessions
    sse_app = server.sse_app(
        sse_path=SSE_PATH, transport_security=security, host=settings.host, max_request_body_size=limit
    )
    # Both endpoints in one app, with the lifespan of streamable HTTP's session manager.
    manager = server.session_manager
    both = Starlette(routes=[*sse_app.routes, *streamable_app.routes], lifespan=lambda _app: manager.run())
    return both, open_sessions


def streamable_served(settings: Settings) -> bool:
    return settings.transport != "sse" or settings.ui  # the web console speaks streamable HTTP, beside /sse too


def guarded(
    app: ASGIApp,
    settings: Settings,
    *,
    refusals: RefusalLog | None = None,
    oauth: OAuthResource | None = None,
    scope_check: RefuseBeyondScope | None = None,
    open_sessions: Callable[[], Container[str]] | None = None,
) -> ASGIApp:
    """``app`` (the MCP endpoints) behind every step of the module docstring, outermost last here.
    ``scope_check``: with OAuth, what refuses a tool call above the token's scope."""
    security = transport_security(settings)
    refusals = refusals or RefusalLog(log, settings.http_refusal_log_interval)
    tokens = settings.bearer_tokens()
    sse, streamable = settings.transport == "sse", streamable_served(settings)
    by_token = bool(tokens) or oauth is not None  # per-client limits count clients by name, else by address
    app = SessionLimits(
        app,
        streamable_path=STREAMABLE_HTTP_PATH if streamable else None,
        sse_path=SSE_PATH if sse else None,
        max_per_client=settings.http_max_sessions_per_client,
        new_per_minute=settings.http_sessions_per_minute,
        by_token=by_token,
        open_sessions=open_sessions,
        refusals=refusals,
    )
    if oauth is not None and streamable:
        if scope_check is None:  # a programming error: never serve OAuth tokens without the scope step
            raise ValueError("guarded: OAuth over streamable HTTP needs scope_check (refuse_beyond_scope)")
        app = ScopeChallenge(app, STREAMABLE_HTTP_PATH, oauth, scope_check, refusals)
    app = BodyLimit(app, settings.http_max_body_bytes, settings.http_body_timeout, refusals)
    if settings.http_rate_limit > 0:
        app = RateLimit(app, settings.http_rate_limit, settings.http_rate_burst, by_token=by_token, refusals=refusals)
    app = MetricsRoute(app, security)  # GET /metrics, behind the token and Host checks
    app = ClientAuth(
        app, tokens, oauth=oauth, auth_failures_per_minute=settings.http_auth_failures_per_minute, refusals=refusals
    )
    if oauth is not None:
        app = ProtectedResourceMetadataRoutes(app, oauth, transport_path(settings))
    # The console's files need no token (a browser opening a page sends none); its MCP requests do.
    return WithConsole(app, security, token_required=by_token) if settings.ui else app


class KeepSessionsLifespan(LifespanOn):
    """uvicorn's lifespan without the shutdown step, in which mcp would end every open session one by
    one: with thousands of sessions that alone takes longer than the 5 s a stop may take (anyio's
    cancellation of their tasks grows faster than their number). The runner exits the process once
    our own services are closed, which ends them all at once (see ``runner.serve``)."""

    async def shutdown(self) -> None:
        return


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
    refusals = RefusalLog(log, settings.http_refusal_log_interval)
    oauth = oauth_resource(settings)
    config = uvicorn.Config(
        http_app(server, settings, refusals, oauth),
        http=head_timeout_protocol(settings.http_header_timeout, refusals),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep our stderr logging
        log_level=library_level(settings.log_level, settings.library_log_level).lower(),  # see logs.py
        access_log=False,
        lifespan="on",
        # Open event streams never end by themselves: past this, a stop cancels them instead of waiting.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    path = transport_path(settings)
    tokens = settings.bearer_tokens()
    accepted = [f"bearer tokens: {', '.join(f'{t.name} ({t.scope})' for t in tokens)}"] if tokens else []
    if oauth is not None:
        accepted.append(f"OAuth access tokens from {oauth.issuer} for {oauth.audience}")
    auth = "; ".join(accepted) or "no token (loopback only)"
    log.info(
        "serving MCP over %s at http://%s:%d%s (%s)",
        settings.transport,
        settings.host,
        settings.port,
        path,
        auth,
    )
    if settings.ui:
        beside = f", with streamable HTTP at {STREAMABLE_HTTP_PATH} for it" if settings.transport == "sse" else ""
        log.info(
            "web console at http://%s:%d%s/%s (ui = false turns it off)", settings.host, settings.port, UI_PATH, beside
        )
    config.load()
    config.lifespan_class = KeepSessionsLifespan
    return HttpServer(config)
