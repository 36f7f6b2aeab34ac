"""Token scopes on the MCP surface: whose request runs, and which tools that client is shown.

One lowlevel middleware (it wraps every MCP request, on every transport):

- makes the client's identity current (``identity.acting_as``) for the whole request, so a tool,
  the audit trail or the scope check at call time (``calls.py``) reads it with
  ``current_identity()``: over HTTP the identity the middleware attached to the request, otherwise
  the one the transport made current (stdio: ``STDIO``); where none did, no scope, so every tool
  call is refused and ``tools/list`` is empty;
- filters ``tools/list``: a ``read`` client sees only read-only tools, a ``write`` client no admin
  tools. A tool missing from ``required`` (none should be) is shown to admins only.

Calling a tool outside the scope is refused at call time by the tool's own wrapper, which also
records the refusal in the audit trail.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer

from .identity import ClientIdentity, Scope, acting_as, identity_of_request
from .lowlevel import lowlevel_server

log = logging.getLogger(__name__)


class ScopeGuard:
    """The middleware; ``required`` maps each tool name to the scope it needs (read, write, admin)."""

    def __init__(self, required: Mapping[str, Scope]) -> None:
        self.required = required

    def allows(self, identity: ClientIdentity, tool: object) -> bool:
        needed = self.required.get(tool, "admin") if isinstance(tool, str) else "admin"
        return identity.allows(needed)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        identity = identity_of_request(ctx.request)
        with acting_as(identity):
            result = await call_next(ctx)
        if ctx.method == "tools/list" and identity.scope != "admin" and isinstance(result, dict):
            tools = [tool for tool in result.get("tools", []) if self.allows(identity, tool.get("name"))]
            result = {**result, "tools": tools}
        return result


def install_scope_guard(server: MCPServer, required: Mapping[str, Scope]) -> None:
    # First in our own middleware: everything after it (and every handler) sees the identity.
    lowlevel_server(server).middleware.append(ScopeGuard(required))
