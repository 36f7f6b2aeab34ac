"""Server-initiated messages to one connected client: resource updates and log entries.

Producers (etcd watches, the hub's transition callback, which runs inside the hub's loop) only put
into the client's outbox and never wait; one sender task per client writes the outbox out. A client
that reads slowly holds up nobody else: pending updates of one URI collapse into one (an update only
says "read again"), and log entries beyond ``LOG_BACKLOG`` push out the oldest, which are counted and
reported once the client catches up.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, get_args

import anyio
from mcp.server.connection import Connection
from mcp_types import LoggingLevel

from .subscriptions import Subscriber

log = logging.getLogger(__name__)

LOG_LEVELS: tuple[LoggingLevel, ...] = get_args(LoggingLevel)  # severity ascending (RFC 5424)
DEFAULT_LOG_LEVEL: LoggingLevel = "info"  # until the client sends logging/setLevel
LOG_BACKLOG = 256
LOGGER = "kk-etcd-mcp"

Message = tuple[str, dict[str, Any]]  # (method, params)


def severity(level: LoggingLevel) -> int:
    return LOG_LEVELS.index(level)


class ConnectedClient(Subscriber):
    """One client connection (handshake-era MCP): its log level, its subscriptions, its outbox."""

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self.connection = connection
        self.log_level: LoggingLevel = DEFAULT_LOG_LEVEL
        self.scope = anyio.CancelScope()
        self._updated: dict[str, None] = {}  # an ordered set
        self._logs: deque[dict[str, Any]] = deque()
        self._dropped = 0
        self._wake = anyio.Event()

    def admits(self, level: LoggingLevel) -> bool:
        return severity(level) >= severity(self.log_level)

    def log(self, level: LoggingLevel, logger: str, data: Any) -> None:
        """Queue a ``notifications/message`` if the client's level admits it; never blocks."""
        if not self.admits(level):
            return
        if len(self._logs) >= LOG_BACKLOG:
            self._logs.popleft()
            self._dropped += 1
        self._logs.append({"level": level, "logger": logger, "data": data})
        self._wake.set()

    async def updated(self, uris: set[str]) -> None:
        self._updated.update(dict.fromkeys(uris))
        self._wake.set()

    async def run_sender(self) -> None:
        """Write the outbox to the client until the connection closes (``scope`` is cancelled)."""
        with self.scope:
            await self.connection.initialized.wait()  # nothing but pings and logs before that
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                for method, params in self._take():
                    try:
                        await self.connection.notify(method, params)  # best effort: a closed stream drops it
                    except Exception:  # never take the other clients' senders and the watches down with it
                        log.exception("could not send %s to a client; dropped", method)

    def _take(self) -> list[Message]:
        messages: list[Message] = []
        if self._dropped and self.admits("warning"):
            note = f"{self._dropped} log messages were dropped: the client did not read them fast enough"
            messages.append(("notifications/message", {"level": "warning", "logger": LOGGER, "data": note}))
        self._dropped = 0
        messages.extend(("notifications/message", entry) for entry in self._logs)
        self._logs.clear()
        messages.extend(("notifications/resources/updated", {"uri": uri}) for uri in self._updated)
        self._updated.clear()
        return messages
