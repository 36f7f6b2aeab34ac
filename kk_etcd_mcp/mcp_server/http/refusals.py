"""What the HTTP guards share: the client's address, a JSON refusal, and a bounded log of refusals."""

from __future__ import annotations

import logging
import time

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def refuse(
    scope: Scope, receive: Receive, send: Send, status: int, error: str, message: str, headers: dict[str, str]
) -> None:
    await JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)(scope, receive, send)


class RefusalLog:
    """Logs refusals at a bounded rate: per kind, at most one line per ``interval`` seconds.

    A client that is refused thousands of times a second (bad tokens, over a limit) would otherwise
    write as many log lines. The first refusal of a kind is logged at once; the ones within the next
    ``interval`` are counted, and the next line logged says how many there were.
    """

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self.logger, self.interval = logger, interval
        self._last: dict[str, float] = {}
        self._held_back: dict[str, int] = {}

    def refused(self, kind: str, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._held_back[kind] = self._held_back.get(kind, 0) + 1
            return
        self._last[kind] = now
        held_back = self._held_back.pop(kind, 0)
        if held_back and last is not None:
            message += f"; {held_back} more like it in the {now - last:.0f}s before were not logged"
        self.logger.log(level, message, *args)
