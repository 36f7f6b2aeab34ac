"""Every mutating tool call is planned, confirmed when it removes something, then applied: one sequence for all.

A mutating tool is written as a plain function that takes ``dry_run`` and returns a ``Change``: called
with ``dry_run=True`` it checks everything, changes nothing, and says what it would change, and
``removes`` names what the change would take away (data, access or availability; see ``change.py``).
``Confirmer.planned`` wraps it (``ToolRegistrar`` does so for every mutating tool, so a tool cannot skip
it) into what the client calls:

1. ``plan``: mcp's resolvers run the tool's own dry run once per call, before its body;
2. ``confirmation``: when the plan removes something and the call is not a dry run, the user is asked
   "Confirm <tool>: <the plan's change>", if the client can ask its user (it declared form
   elicitation). Otherwise ``confirm_destructive`` decides: ``elicit`` refuses, saying how to allow
   such calls; ``allow`` runs them; ``deny`` refuses. Whatever the tool is called, the plan decides;
3. the apply: a dry run returns the plan; otherwise, once the change may go ahead, the tool runs with
   ``dry_run=False``. A tool that declares a ``reviewed`` parameter is handed the plan (``Reviewed``),
   so that it can write only while etcd is still as the plan saw it.

mcp's resolvers carry the question over either protocol: mid-call on the 2025 protocol versions, and as
an ``InputRequiredResult`` the client answers and retries on 2026-07-28. A declined, cancelled or
refused confirmation raises ``Refused``; an accepted one re-reads the plan and refuses when it changed
while the user was deciding. Nothing is written before that.

(No ``from __future__ import annotations`` here: the resolvers built per tool must carry real
annotation objects, which mcp reads with ``typing.get_type_hints``.)
"""

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from mcp.server.elicitation import AcceptedElicitation, DeclinedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.server.mcpserver.utilities.context_injection import find_context_parameter
from pydantic import BaseModel, Field

from ..change import Change
from ..errors import KkEtcdError
from ..settings import ConfirmMode
from .errors import Refused

T = TypeVar("T", bound=Change)

PLAN, CONFIRMATION, REVIEWED = "plan", "confirmation", "reviewed"  # the parameters the wrapper fills itself
_CONTEXT = "mcp_context"  # the wrapper's Context parameter, when the tool has none of its own


class Confirmation(BaseModel):
    """The form the user answers: accepting it applies the change shown."""

    confirm: bool = Field(
        default=True,
        title="Apply this change",
        description="Accept to apply the change shown; decline to leave everything as it is.",
    )


@dataclass(frozen=True)
class Preview(Generic[T]):
    """A mutating call's dry run, as its confirmation shows it."""

    result: T | None = None
    error: KkEtcdError | None = None  # raised by the tool body, so the call fails (and is audited) as usual

    @property
    def summary(self) -> str:
        return self.result.change if self.result is not None else ""

    @property
    def removes(self) -> bool:
        return self.result is not None and bool(self.result.removes)

    @property
    def lost(self) -> str:
        """What the change removes, in one sentence (for questions and refusals)."""
        return f"It removes: {'; '.join(self.result.removes)}." if self.result is not None else ""

    def value(self) -> T:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@dataclass(frozen=True)
class Reviewed(Generic[T]):
    """What a tool's apply may rely on: the plan this call showed (and checked again), and whether the
    user confirmed it in this call (rather than nobody being asked)."""

    plan: T
    confirmed: bool


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
    def __init__(self, mode: ConfirmMode) -> None:
        self.mode = mode

    async def preview(self, dry_run: Callable[[], Awaitable[T]]) -> Preview[T]:
        """Run the tool's dry run; its error is kept for the body to raise."""
        try:
            planned = await dry_run()
        except KkEtcdError as exc:
            return Preview(error=exc)
        return Preview(planned if planned.dry_run else planned.model_copy(update={"dry_run": True}))

    def decide(
        self, tool: str, ctx: Context[Any, Any], plan: Preview[Any], dry_run: bool
    ) -> Elicit[Confirmation] | Verdict:
        if plan.error is not None or dry_run or not plan.removes:
            return Verdict(True, "nothing to confirm")
        if can_elicit(ctx):
            question = f"Confirm {tool}: {plan.summary}. {plan.lost} Nothing changes unless you accept."
            return Elicit(question, Confirmation)
        if self.mode == "allow":
            return Verdict(True, "confirm_destructive = allow")
        if self.mode == "deny":
            return Verdict(
                False,
                f"{tool} was refused: this client cannot ask its user to confirm (it does not support MCP "
                "elicitation), and this server refuses calls that remove something when it cannot confirm them "
                f"(confirm_destructive = deny). Nothing was changed. It would {plan.summary}. {plan.lost}",
            )
        return Verdict(
            False,
            f"{tool} needs the user's confirmation, and this client cannot ask for it (it does not support MCP "
            f"elicitation). Nothing was changed. It would {plan.summary}. {plan.lost} Use a client that supports "
            'elicitation, or have the server\'s operator set confirm_destructive = "allow" '
            "(KK_ETCD_CONFIRM_DESTRUCTIVE=allow) to run calls that remove something without confirmation. "
            "dry_run=true shows the change without making it.",
        )

    async def require(
        self, tool: str, answer: Answer, plan: Preview[Any], again: Callable[[], Awaitable[Preview[Any]]]
    ) -> Preview[Any] | None:
        """Return when the change may go ahead, else raise ``Refused``: the plan read again after the user
        confirmed it, or None when nobody was asked. ``again`` re-runs the plan."""
        if not isinstance(answer, AcceptedElicitation):
            action = "declined" if isinstance(answer, DeclinedElicitation) else "cancelled"
            raise Refused(f"the user {action} {tool}: nothing was changed. It would {plan.summary}.")
        data = answer.data
        if isinstance(data, Verdict):
            if not data.allowed:
                raise Refused(data.reason)
            return None
        if not isinstance(data, Confirmation) or not data.confirm:
            raise Refused(f"{tool} was not confirmed (the box was left unchecked): nothing was changed.")
        fresh = await again()
        current = fresh.value()  # an error now (the key went away, ...) fails the call as usual
        if current.reviewed() != plan.value().reviewed():
            raise Refused(
                f"{tool}: what it would change is no longer what the user confirmed (it would now "
                f"{fresh.summary}). Nothing was changed; call it again to confirm the new change."
            )
        return fresh

    def planned(self, fn: Callable[..., Awaitable[Change]]) -> Callable[..., Awaitable[Change]]:
        """``fn`` planned, confirmed and applied as the module docstring says; TypeError when ``fn`` cannot be
        (no ``dry_run`` parameter, or a result that is not a ``Change``)."""
        tool = fn.__name__
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)
        result_type = hints.get("return")
        if "dry_run" not in signature.parameters:
            raise TypeError(f"mutating tool {tool} must take dry_run (a plan that changes nothing)")
        if not (isinstance(result_type, type) and issubclass(result_type, Change)):
            raise TypeError(f"mutating tool {tool} must return a Change (what it changes and what that removes)")
        context = find_context_parameter(fn)
        wants_review = REVIEWED in signature.parameters
        own = [p for p in signature.parameters.values() if p.name not in {REVIEWED, context}]
        arguments = [p.name for p in own if p.name != "dry_run"]

        async def plan(**kwargs: Any) -> Preview[Any]:
            ctx = kwargs.pop(_CONTEXT)
            extra = {context: ctx} if context else {}
            return await self.preview(lambda: fn(**kwargs, dry_run=True, **extra))

        async def confirm(ctx: Context[Any, Any], plan: Preview[Any], dry_run: bool) -> Elicit[Confirmation] | Verdict:
            return self.decide(tool, ctx, plan, dry_run)

        async def tool_call(**kwargs: Any) -> Change:
            preview: Preview[Any] = kwargs.pop(PLAN)
            answer: Answer = kwargs.pop(CONFIRMATION)
            ctx = kwargs[context] if context else kwargs.pop(_CONTEXT)
            planned: Change = preview.value()
            if kwargs["dry_run"]:
                return planned

            async def again() -> Preview[Any]:
                return await plan(**{name: kwargs[name] for name in arguments}, **{_CONTEXT: ctx})

            fresh = await self.require(tool, answer, preview, again)
            if wants_review:
                kwargs[REVIEWED] = Reviewed(fresh.value(), True) if fresh is not None else Reviewed(planned, False)
            applied: Change = await fn(**kwargs)
            return applied

        # The signatures mcp reads: the plan takes the tool's arguments by name (and the Context), the
        # confirmation the plan and dry_run, and the tool the client's arguments plus both (filled by mcp).
        context_param = inspect.Parameter(_CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=Context)
        by_name = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(n, Any)) for n in arguments
        ]
        _declare(plan, f"plan_{tool}", [context_param, *by_name], Preview)
        plan_type = Annotated[Preview, Resolve(plan)]
        _declare(
            confirm,
            f"confirm_{tool}",  # its key in mcp's request_state
            [
                inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context),
                inspect.Parameter(PLAN, inspect.Parameter.KEYWORD_ONLY, annotation=plan_type),
                inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, annotation=bool),
            ],
            Elicit[Confirmation] | Verdict,
        )
        public = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own]
        if context:
            public.append(signature.parameters[context].replace(kind=inspect.Parameter.KEYWORD_ONLY))
        else:
            public.append(context_param.replace(default=None))
        public += [
            inspect.Parameter(PLAN, inspect.Parameter.KEYWORD_ONLY, annotation=plan_type),
            inspect.Parameter(
                CONFIRMATION, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[Answer, Resolve(confirm)]
            ),
        ]
        _declare(tool_call, tool, public, result_type)
        tool_call.__doc__ = fn.__doc__
        return tool_call


def _declare(fn: Callable[..., Any], name: str, parameters: list[inspect.Parameter], returns: Any) -> None:
    """Give a generated function the name, signature and annotations that mcp inspects."""
    fn.__name__ = fn.__qualname__ = name
    fn.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
    fn.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": returns}
