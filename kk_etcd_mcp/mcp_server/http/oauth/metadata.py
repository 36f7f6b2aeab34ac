"""Protected Resource Metadata (RFC 9728): the public document telling clients which authorization
server issues tokens for this server, and which scopes exist.

Served without a token, at ``/.well-known/oauth-protected-resource`` followed by the resource's
path (``/mcp``: the URL the 401 challenge names, as RFC 9728 §3.1 builds it), and at the bare
well-known path, which clients try next. mcp's model and handler make the document; its CORS
wrapper lets browser-based clients (the MCP Inspector) read it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from mcp.server.auth.handlers.metadata import ProtectedResourceMetadataHandler
from mcp.server.auth.routes import cors_middleware
from mcp.shared.auth import ProtectedResourceMetadata
from starlette.types import ASGIApp, Receive, Scope, Send

from .resource import OAuthResource

WELL_KNOWN = "/.well-known/oauth-protected-resource"
RESOURCE_NAME = "kk-etcd-mcp"


def metadata_document(resource: OAuthResource) -> ProtectedResourceMetadata:
    return ProtectedResourceMetadata.model_validate(
        {
            "resource": resource.resource_url,
            "authorization_servers": [resource.issuer],  # kept exactly: clients compare issuers as strings
            "scopes_supported": resource.scopes.all(),
            "bearer_methods_supported": ["header"],
            "resource_name": RESOURCE_NAME,
        }
    )


class ProtectedResourceMetadataRoutes:
    """Answers GET (and CORS preflight) on the metadata paths; passes everything else to ``app``."""

    def __init__(self, app: ASGIApp, resource: OAuthResource, local_path: str) -> None:
        self.app = app
        handler = ProtectedResourceMetadataHandler(metadata_document(resource))
        self.document = cors_middleware(handler.handle, ["GET", "OPTIONS"])
        public_path = urlsplit(resource.resource_url).path
        self.paths = {WELL_KNOWN, WELL_KNOWN + local_path, WELL_KNOWN + public_path}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wanted = scope["type"] == "http" and scope["method"] in ("GET", "OPTIONS")
        if wanted and scope["path"].rstrip("/") in self.paths:
            await self.document(scope, receive, send)
            return
        await self.app(scope, receive, send)
