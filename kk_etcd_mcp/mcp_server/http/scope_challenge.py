"""``insufficient_scope`` for an OAuth client calling a tool above its token's scope (streamable HTTP).

The MCP authorization spec answers a request the token's scope is too small for with 403 and
``WWW-Authenticate: Bearer error="insufficient_scope", scope="<needed>"``, so a client can ask its
user for more (step-up authorization). The body is a JSON-RPC error for the call, carrying the
sentence the tool itself would have answered, so a client without step-up shows it as the call's
error. The refusal is decided and audited by the tool's own guard (``toolset.refuse_beyond_scope``),
as if the call had reached it; the tools a client is shown stay filtered by scope as before.

Not for static tokens (no step-up is possible: the call gets the tool's own refusal), and not over
SSE, whose clients treat an error status on a message POST as a lost connection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp_types import INVALID_REQUEST
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..identity import ClientIdentity, IdentifiedUser
from ..identity import Scope as ToolScope
from .limits import read_body
from .oauth import OAuthResource
from .refusals import RefusalLog

log = logging.getLogger(__name__)

TOOLS_CALL = "tools/call"

# (identity, tool, arguments) -> (the scope the call needs, the refusal's text) if refused, else None
RefuseBeyondScope = Callable[[ClientIdentity, str, dict[str, Any]], Awaitable[tuple[ToolScope, str] | None]]


class ScopeChallenge:
    def __init__(
        self,
        app: ASGIApp,
        path: str,
        oauth: OAuthResource,
        refuse_beyond_scope: RefuseBeyondScope,
        refusals: RefusalLog | None = None,
    ) -> None:
        self.app, self.path, self.oauth = app, path, oauth
        self._refuse_beyond_scope = refuse_beyond_scope
        self._refusals = refusals or RefusalLog(log, 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"].rstrip("/") != self.path
            or not isinstance(user, IdentifiedUser)
            or not user.oauth
            or user.client.scope == "admin"
        ):
            await self.app(scope, receive, send)
            return
        body, receive = await read_body(receive)
        call = _tool_call(body)
        refused = await self._refuse_beyond_scope(user.client, *call[1:]) if call is not None else None
        if call is None or refused is None:
            await self.app(scope, receive, send)
            return
        request_id, tool, _ = call
        needed, text = refused
        scope_name = self.oauth.scopes.name(needed)
        name = user.client.name
        self._refusals.refused("403 scope", logging.INFO, "refused %s's call of %s: no %s", name, tool, scope_name)
        message = f"{text} (the OAuth scope {scope_name})"
        response = JSONResponse(
            {"jsonrpc": "2.0", "id": request_id, "error": {"code": INVALID_REQUEST, "message": message}},
            status_code=403,
            headers={"WWW-Authenticate": self.oauth.challenge("insufficient_scope", message, scope=scope_name)},
        )
        await response(scope, receive, send)


def _tool_call(body: bytes) -> tuple[str | int | None, str, dict[str, Any]] | None:
    """(request id, tool name, arguments) of a ``tools/call`` request; None for any other message."""
    if TOOLS_CALL.encode() not in body:
        return None
    try:
        message = json.loads(body)
    except ValueError:
        return None  # mcp answers what it cannot parse
    if not isinstance(message, dict) or message.get("method") != TOOLS_CALL:
        return None
    params = message.get("params")
    name = params.get("name") if isinstance(params, dict) else None
    if not isinstance(name, str):
        return None
    arguments = params.get("arguments") if isinstance(params, dict) else None
    request_id = message.get("id")
    return (
        request_id if isinstance(request_id, str | int) else None,
        name,
        arguments if isinstance(arguments, dict) else {},
    )
