"""What a gRPC health probe needs of a channel, whichever client makes the call.

``check`` returns the ``HealthCheckResponse`` serving status, or raises ``HealthCallError`` with the
gRPC status code's name and the gist of why; ``close`` ends the connection and any check in flight.
"""

from __future__ import annotations

from typing import Protocol

from ...h2grpc.unary import CHANNEL_CLOSED
from ...h2grpc.unary import CLOSED_DURING_CALL as CLOSED_DURING_CHECK

__all__ = ["CHANNEL_CLOSED", "CLOSED_DURING_CHECK", "HealthCallError", "HealthChannel"]


class HealthCallError(Exception):
    """A check that got no serving status: ``code`` a gRPC status code's name (None when the channel
    itself was closed), ``detail`` why, in a few words."""

    def __init__(self, code: str | None, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if code else detail)
        self.code = code
        self.detail = detail


class HealthChannel(Protocol):
    async def check(self, service: str, within: float) -> int: ...

    async def close(self) -> None: ...
