"""The one place where kk_etcd_mcp's errors become MCP tool errors.

mcp 2.x carries a raised ``ToolError``'s message to the client as an ``isError`` result; any other
exception reaches the model only as "Error executing tool <name>". So every tool is wrapped here.
``Refused`` marks a call stopped before it did anything (scope, busy, a change not confirmed): the
audit trail records it as "refused" rather than "error".
"""

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from ..errors import KkEtcdError

P = ParamSpec("P")
R = TypeVar("R")


class Refused(ToolError):
    """The call was stopped before anything was done; the message says why and what to do."""


def translate_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except KkEtcdError as exc:
            raise ToolError(str(exc)) from exc

    return wrapper
