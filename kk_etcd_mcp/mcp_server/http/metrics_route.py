"""``GET /metrics`` on the HTTP transports: this process's Prometheus metrics, for clients with scope ``read``.

Mounted inside ``ClientAuth`` (``http_app``), so a scrape needs one of the configured bearer tokens, as
an MCP request does, and it passes the same Host/Origin check as mcp's endpoints (DNS rebinding); every
other path goes on to the MCP app untouched.
"""

from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ...metrics import metrics_app
from .auth import identity_of
from .refusals import refuse

METRICS_PATH = "/metrics"


class MetricsRoute:
    def __init__(self, app: ASGIApp, security: TransportSecuritySettings) -> None:
        self.app = app
        self._metrics = metrics_app()
        self._hosts = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != METRICS_PATH:
            await self.app(scope, receive, send)
            return
        refused = await self._hosts.validate_request(Request(scope, receive), is_post=False)
        if refused is not None:  # a Host (or Origin) this server does not answer to
            await refused(scope, receive, send)
            return
        identity = identity_of(scope)
        if not identity.allows("read"):
            message = f"/metrics needs scope 'read', and this client ({identity.name}) has none"
            await refuse(scope, receive, send, 403, "insufficient_scope", message, {})
            return
        await self._metrics(scope, receive, send)
