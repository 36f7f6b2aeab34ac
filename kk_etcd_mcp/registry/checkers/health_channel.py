"""What a gRPC health probe needs of a channel, whichever client makes the call.

``check`` returns the ``HealthCheckResponse`` serving status, or raises ``HealthCallError`` with the
gRPC status code's name and the gist of why; ``close`` ends the connection and any check in flight.
"""

from __future__ import annotations

from typing import Protocol

# grpc.StatusCode's names by number (the gRPC wire protocol sends the number in grpc-status).
STATUS_CODE_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)  # fmt: skip
CHANNEL_CLOSED = "Channel is closed."
CLOSED_DURING_CHECK = "cancelled (channel closed)"


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


def status_code_name(value: str) -> str:
    """The name of a grpc-status value ('14' -> 'UNAVAILABLE'); the number itself when unknown."""
    return STATUS_CODE_NAMES[int(value)] if value.isdigit() and int(value) < len(STATUS_CODE_NAMES) else value
