"""Confirming destructive calls with the user (MCP elicitation), from the same preview as dry_run.

A destructive tool takes two parameters that mcp's resolvers fill before its body runs:

- ``plan``: a ``Preview``, the tool's own dry run (the very code ``dry_run=true`` returns), made once
  per call;
- ``confirmation``: the user's answer to "Confirm <tool>: <the preview's summary>". It is asked only
  when the call would destroy something, is not a dry run, and the client can ask its user (it declared
  form elicitation). Otherwise ``confirm_destructive`` decides: ``elicit`` refuses, saying how to allow
  such calls; ``allow`` runs them; ``deny`` refuses.

mcp's resolvers carry the question over either protocol: mid-call on the 2025 protocol versions, and as
an ``InputRequiredResult`` the client answers and retries on 2026-07-28. The body then calls ``require``:
a declined, cancelled or refused confirmation raises ``Refused``; an accepted one re-reads the preview
and refuses when it changed while the user was deciding. Nothing is written before that.

(No ``from __future__ import annotations`` here: the resolver built per tool must carry real
annotation objects, which mcp reads with ``typing.get_type_hints``.)
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Protocol, TypeVar

from mcp.server.elicitation import AcceptedElicitation, DeclinedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit, Resolve
from pydantic import BaseModel, Field

from ..errors import KkEtcdError
from ..settings import ConfirmMode
from .errors import Refused
from .identity import Scope, current_identity


class Describes(Protocol):
    @property
    def change(self) -> str: ...


T = TypeVar("T", bound=Describes)


class Confirmation(BaseModel):
    """The form the user answers: accepting it applies the change shown."""

    confirm: bool = Field(
        default=True,
        title="Apply this change",
        description="Accept to apply the change shown; decline to leave everything as it is.",
    )


@dataclass(frozen=True)
class Preview(Generic[T]):
    """A destructive call's dry run, as its confirmation shows it."""

    result: T | None = None
    error: KkEtcdError | None = None  # raised by the tool body, so the call fails (and is audited) as usual
    destructive: bool = False  # False: nothing would be destroyed, nobody is asked
    skipped: bool = False  # the client lacks the tool's scope: nothing was read (the guard refuses the call)

    @property
    def summary(self) -> str:
        return self.result.change if self.result is not None else ""

    def value(self) -> T:
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise Refused("this client may not call this tool. Nothing was done.")
        return self.result


@dataclass(frozen=True)
class Verdict:
    """The confirmation step's answer when nobody was asked."""

    allowed: bool
    reason: str


Answer = ElicitationResult[Confirmation]


def can_elicit(ctx: Context[Any, Any]) -> bool:
    """The client declared form elicitation (a bare ``elicitation: {}`` means form, as in mcp)."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


class Confirmer:
    def __init__(self, mode: ConfirmMode, required_scope: Mapping[str, Scope]) -> None:
        """``required_scope``: the registrar's map of tool to scope (a client without it is not asked)."""
        self.mode = mode
        self.required_scope = required_scope

    async def preview(
        self, tool: str, dry_run: Callable[[], Awaitable[T]], destructive: Callable[[T], bool]
    ) -> Preview[T]:
        """Run the tool's dry run; its error is kept for the body to raise. Unread without the scope."""
        if not current_identity().allows(self.required_scope.get(tool, "admin")):
            return Preview(skipped=True)
        try:
            result = await dry_run()
        except KkEtcdError as exc:
            return Preview(error=exc)
        return Preview(result, destructive=destructive(result))

    def resolver(
        self, tool: str, preview: Callable[..., Awaitable[Preview[Any]]]
    ) -> Callable[..., Awaitable[Elicit[Confirmation] | Verdict]]:
        """The resolver of a tool's ``confirmation`` parameter; ``preview`` is its ``plan`` resolver."""

        async def confirm(
            ctx: Context[Any, Any], plan: Annotated[Preview[Any], Resolve(preview)], dry_run: bool
        ) -> Elicit[Confirmation] | Verdict:
            return self.decide(tool, ctx, plan, dry_run)

        confirm.__qualname__ = confirm.__name__ = f"confirm_{tool}"  # its key in mcp's request_state
        return confirm

    def decide(
        self, tool: str, ctx: Context[Any, Any], plan: Preview[Any], dry_run: bool
    ) -> Elicit[Confirmation] | Verdict:
        if plan.skipped or plan.error is not None or dry_run or not plan.destructive:
            return Verdict(True, "nothing to confirm")
        if can_elicit(ctx):
            return Elicit(f"Confirm {tool}: {plan.summary}. Nothing changes unless you accept.", Confirmation)
        if self.mode == "allow":
            return Verdict(True, "confirm_destructive = allow")
        if self.mode == "deny":
            return Verdict(
                False,
                f"{tool} was refused: this client cannot ask its user to confirm (it does not support MCP "
                "elicitation), and this server refuses destructive calls it cannot confirm "
                f"(confirm_destructive = deny). Nothing was changed. It would {plan.summary}.",
            )
        return Verdict(
            False,
            f"{tool} needs the user's confirmation, and this client cannot ask for it (it does not support MCP "
            f"elicitation). Nothing was changed. It would {plan.summary}. Use a client that supports "
            'elicitation, or have the server\'s operator set confirm_destructive = "allow" '
            "(KK_ETCD_CONFIRM_DESTRUCTIVE=allow) to run destructive calls without confirmation. "
            "dry_run=true shows the change without making it.",
        )

    async def require(
        self, tool: str, answer: Answer, plan: Preview[Any], again: Callable[[], Awaitable[Preview[Any]]]
    ) -> None:
        """Return when the change may go ahead; else raise ``Refused``. ``again`` re-runs the preview."""
        if not isinstance(answer, AcceptedElicitation):
            action = "declined" if isinstance(answer, DeclinedElicitation) else "cancelled"
            raise Refused(f"the user {action} {tool}: nothing was changed. It would {plan.summary}.")
        data = answer.data
        if isinstance(data, Verdict):
            if not data.allowed:
                raise Refused(data.reason)
            return
        if not isinstance(data, Confirmation) or not data.confirm:
            raise Refused(f"{tool} was not confirmed (the box was left unchecked): nothing was changed.")
        fresh = await again()
        fresh.value()  # an error now (the key went away, ...) fails the call as usual
        if fresh.summary != plan.summary:
            raise Refused(
                f"{tool}: what it would change is no longer what the user confirmed (it would now "
                f"{fresh.summary}). Nothing was changed; call it again to confirm the new change."
            )
