"""Registering tools with their annotations, scope and guard, honouring ``read_only``.

Each tool needs a scope: read-only tools ``read``; mutating ones the registrar's ``mutating_scope``
(``write`` for kv and registry; app.py registers access and cluster tools through
``with_mutating_scope("admin")``). ``required_scope`` maps every offered tool to its scope (HTTP
uses it to list only the tools a token may call); the guard enforces it at call time.
"""

import copy
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from ..settings import ConfirmMode
from .calls import Affected, CallGuard, ToolPolicy, default_affected
from .confirm import Confirmer
from .identity import Scope


class ToolRegistrar:
    """Adds tools to an MCPServer; with ``read_only`` only read-only tools are offered at all."""

    def __init__(
        self,
        server: MCPServer,
        *,
        read_only: bool,
        guard: CallGuard | None = None,
        confirm_mode: ConfirmMode = "elicit",
    ) -> None:
        self.server = server
        self.read_only = read_only
        self.guard = guard or CallGuard()
        self.mutating_scope: Scope = "write"
        self.names: list[str] = []
        self.required_scope: dict[str, Scope] = {}
        self.confirm = Confirmer(confirm_mode, self.required_scope)

    def with_mutating_scope(self, scope: Scope) -> "ToolRegistrar":
        """The same registrar (same names, scopes, guard) giving mutating tools ``scope``."""
        view = copy.copy(self)
        view.mutating_scope = scope
        return view

    def add(
        self,
        fn: Callable[..., Awaitable[Any]],
        *,
        title: str,
        read_only: bool,
        destructive: bool = False,
        idempotent: bool = False,
        open_world: bool = False,
        scope: Scope | None = None,
        affected: Affected = default_affected,
    ) -> None:
        """``scope``: overrides the default (read for read-only tools, else ``mutating_scope``).
        ``affected``: what the audit trail records as changed (default: the keys the result names)."""
        if self.read_only and not read_only:
            return
        if destructive and "dry_run" not in inspect.signature(fn).parameters:
            raise TypeError(f"destructive tool {fn.__name__} must take dry_run (a preview that changes nothing)")
        annotations = ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=destructive if not read_only else False,
            idempotent_hint=idempotent or read_only,
            open_world_hint=open_world,  # etcd is a closed world; probing registered services is not
        )
        needed: Scope = scope or ("read" if read_only else self.mutating_scope)
        policy = ToolPolicy(fn.__name__, needed, mutating=not read_only, affected=affected)
        self.server.add_tool(self.guard.wrap(fn, policy), title=title, annotations=annotations, structured_output=True)
        self.names.append(fn.__name__)
        self.required_scope[fn.__name__] = needed
