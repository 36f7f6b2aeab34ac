"""Registering tools with their annotations, scope, guard and confirmation, honouring ``read_only``.

A tool is registered where it is defined, by one of two decorators, so a registration reads as typed
input, one service call, a model out and its annotations:

- ``@tools.query(title)``: a read-only tool (scope ``read``);
- ``@tools.change(title, destructive=..., idempotent=..., affected=...)``: a mutating tool (scope: the
  registrar's ``mutating_scope``, ``write`` for kv and registry; app.py registers access and cluster
  tools through ``with_mutating_scope("admin")``). With ``read_only`` it is not offered at all.

``required_scope`` maps every offered tool to its scope (HTTP uses it to list only the tools a token
may call); the guard enforces it at call time.

A mutating tool goes through ``Confirmer.planned``: it must take ``dry_run`` (``DryRun``) and return a
``Change``, and the user is asked to confirm whenever its plan removes something, so no tool can forget
the confirmation or decide it by its name. Every tool call, from argument validation to the result,
runs inside the guard (``calls.py``): bad arguments are refused in one sentence per argument, and every
mutating call is audited once. Plan, confirmation, dry run, apply and audit are written there once.
"""

import copy
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations
from pydantic import ConfigDict, Field, ValidationError

from ..settings import ConfirmMode
from .calls import Affected, CallGuard, ToolPolicy, default_affected
from .confirm import Confirmer
from .errors import InvalidArguments, describe_invalid_arguments, translate_errors
from .identity import ClientIdentity, Scope
from .lowlevel import install_tool, tool_of

# The dry_run argument every mutating tool takes (a tool may describe it in its own words).
DryRun = Annotated[bool, Field(description="Only say what would change (`change`, `removes`); change nothing.")]

ToolFunction = TypeVar("ToolFunction", bound=Callable[..., Awaitable[Any]])


class GuardedTool(Tool):
    """A tool whose every call, validation and resolvers included, runs inside the guard."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    guard: CallGuard = Field(exclude=True)
    policy: ToolPolicy = Field(exclude=True)

    async def run(self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False) -> Any:
        async def invoke() -> Any:
            try:
                return await Tool.run(self, arguments, context)
            except ToolError as exc:
                if isinstance(exc.__cause__, ValidationError) and not isinstance(exc, UnexpectedToolError):
                    text = describe_invalid_arguments(self.name, exc.__cause__, self.parameters)
                    raise InvalidArguments(text) from exc.__cause__
                raise

        result = await self.guard.run(self.policy, arguments, invoke)
        if not convert_result:
            return result
        try:
            return self.fn_metadata.convert_result(result)
        except Exception as exc:
            raise UnexpectedToolError(f"Error executing tool {self.name}") from exc


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
        self.confirm = Confirmer(confirm_mode)

    def with_mutating_scope(self, scope: Scope) -> "ToolRegistrar":
        """The same registrar (same names, scopes, guard) giving mutating tools ``scope``."""
        view = copy.copy(self)
        view.mutating_scope = scope
        return view

    def query(
        self, title: str, *, open_world: bool = False, scope: Scope | None = None
    ) -> Callable[[ToolFunction], ToolFunction]:
        """Register the decorated function as a read-only tool. ``open_world``: it reaches beyond etcd (the
        registered services themselves). ``scope``: overrides ``read``."""

        def register(fn: ToolFunction) -> ToolFunction:
            self._add(fn, title=title, read_only=True, open_world=open_world, scope=scope)
            return fn

        return register

    def change(
        self,
        title: str,
        *,
        destructive: bool = False,
        idempotent: bool = False,
        affected: Affected = default_affected,
    ) -> Callable[[ToolFunction], ToolFunction]:
        """Register the decorated function as a mutating tool: planned, confirmed when its plan removes
        something, applied, audited. ``destructive``: the hint for clients that some calls may remove
        something (the confirmation itself is decided per call, by the plan). ``affected``: what the audit
        trail records as changed (default: the keys the result names). TypeError when the function takes
        no ``dry_run`` or does not return a ``Change``."""

        def register(fn: ToolFunction) -> ToolFunction:
            self._add(
                fn, title=title, read_only=False, destructive=destructive, idempotent=idempotent, affected=affected
            )
            return fn

        return register

    def _add(
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
        if self.read_only and not read_only:
            return
        name = fn.__name__
        annotations = ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=destructive if not read_only else False,
            idempotent_hint=idempotent or read_only,
            open_world_hint=open_world,  # etcd is a closed world; probing registered services is not
        )
        needed: Scope = scope or ("read" if read_only else self.mutating_scope)
        policy = ToolPolicy(name, needed, mutating=not read_only, affected=affected)
        body = fn if read_only else self.confirm.planned(fn)
        tool = Tool.from_function(translate_errors(body), title=title, annotations=annotations, structured_output=True)
        fields = {field: getattr(tool, field) for field in Tool.model_fields}
        install_tool(self.server, GuardedTool.model_construct(**fields, guard=self.guard, policy=policy))
        self.names.append(name)
        self.required_scope[name] = needed


async def refuse_beyond_scope(
    server: MCPServer, identity: ClientIdentity, tool: str, arguments: dict[str, Any]
) -> tuple[Scope, str] | None:
    """The scope a call of ``tool`` needs and the refusal's text, recorded in the audit trail as the call's own
    refusal would be, when ``identity`` may not call it; None when it may (or no such tool: the call says so)."""
    found = tool_of(server, tool)
    if not isinstance(found, GuardedTool) or identity.allows(found.policy.scope):
        return None
    return found.policy.scope, await found.guard.refuse_scope(found.policy, identity, arguments)
