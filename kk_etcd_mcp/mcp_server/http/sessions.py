"""Sessions per client: how many a client may hold open at once, and how fast it may open new ones.

A session is whatever holds the server's resources past one request:

- a streamable HTTP session (the initialize handshake): from the response that names its
  ``Mcp-Session-Id`` until the client deletes it or it has been idle for
  ``http_session_idle_timeout`` (mcp's session manager ends it then; it is asked which are open);
- an SSE connection (``GET /sse``), while it is open;
- a stream of streamable HTTP's stateless era (``subscriptions/listen``), while it is open.

Per client (its token's name, or its address when no tokens are configured): at most
``max_per_client`` at once, and at most ``per_minute`` new ones a minute. Over either: 429 and
nothing is opened. Without this one client could take every session mcp allows (10,000) and every
other client would get 503.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Container
from typing import Literal

from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .buckets import per_minute
from .limits import client_key, read_body
from .refusals import RefusalLog, refuse

log = logging.getLogger(__name__)

Opening = Literal["handshake", "stream"]
LISTEN_METHOD = "subscriptions/listen"


def open_session_ids(manager: StreamableHTTPSessionManager) -> Callable[[], Container[str]]:
    """The IDs of the sessions mcp's manager holds open. mcp 2.3 has no public accessor for them, so
    this reads its registry; checked here, once, so a change in mcp fails at start, not silently."""
    sessions = manager._server_instances
    if not isinstance(sessions, dict):
        raise TypeError("mcp's StreamableHTTPSessionManager changed: cannot count open sessions")
    return lambda: manager._server_instances


class SessionLimits:
    """429 for a request that would open a session beyond its client's share (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        streamable_path: str | None,
        sse_path: str | None,
        max_per_client: int,
        new_per_minute: int,
        by_token: bool,
        open_sessions: Callable[[], Container[str]] | None = None,
        refusals: RefusalLog | None = None,
    ) -> None:
        self.app = app
        self.streamable_path, self.sse_path = streamable_path, sse_path
        self.max_per_client, self.by_token = max_per_client, by_token
        self._new = per_minute(new_per_minute) if new_per_minute else None
        self._open_sessions = open_sessions
        self._refusals = refusals or RefusalLog(log, 0)
        self._streams: Counter[str] = Counter()  # open SSE connections and listen streams, and handshakes under way
        self._sessions: dict[str, set[str]] = {}  # streamable HTTP session IDs by client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        opening, receive = await self._opening(scope, receive) if scope["type"] == "http" else (None, receive)
        if opening is None:
            await self.app(scope, receive, send)
            return
        client = client_key(scope, self.by_token)
        held = self._held(client)
        if held >= self.max_per_client:
            await self._too_many(scope, receive, send, client, held)
            return
        if self._new is not None and (wait := self._new.take(client)):
            await self._too_fast(scope, receive, send, client, wait)
            return
        self._streams[client] += 1
        try:
            await self.app(scope, receive, self._session_recorder(client, send) if opening == "handshake" else send)
        finally:
            self._streams[client] -= 1
            if not self._streams[client]:
                del self._streams[client]

    async def _opening(self, scope: Scope, receive: Receive) -> tuple[Opening | None, Receive]:
        """Whether this request opens a session, and the receive to pass on (a body read here is replayed)."""
        path, method = scope["path"].rstrip("/"), scope["method"]
        if path == self.sse_path and method == "GET":
            return "stream", receive
        if path != self.streamable_path or method != "POST":
            return None, receive
        headers = Headers(scope=scope)
        if MCP_SESSION_ID_HEADER in headers:
            return None, receive  # a request within a session
        version = headers.get(MCP_PROTOCOL_VERSION_HEADER)
        if version is None or version in HANDSHAKE_PROTOCOL_VERSIONS:
            return "handshake", receive  # mcp routes these to its session manager
        # The stateless era: only a listen request stays open. BodyLimit has read the whole body by now.
        body, replay = await read_body(receive)
        return ("stream" if _is_listen(body) else None), replay

    def _held(self, client: str) -> int:
        sessions = self._sessions.pop(client, set())
        if self._open_sessions is not None:
            still_open = self._open_sessions()
            sessions = {s for s in sessions if s in still_open}  # deleted or idled out since: forgotten
        if sessions:
            self._sessions[client] = sessions
        return self._streams[client] + len(sessions)

    def _session_recorder(self, client: str, send: Send) -> Send:
        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                session_id = MutableHeaders(raw=message.get("headers", [])).get(MCP_SESSION_ID_HEADER)
                if session_id:
                    self._sessions.setdefault(client, set()).add(session_id)
            await send(message)

        return recording_send

    async def _too_many(self, scope: Scope, receive: Receive, send: Send, client: str, held: int) -> None:
        self._refusals.refused(
            "429 sessions", logging.WARNING, "refused a new session of %s: it holds %d already", client, held
        )
        await refuse(
            scope,
            receive,
            send,
            429,
            "too_many_sessions",
            f"{client} holds {held} open sessions, the most allowed (http_max_sessions_per_client); no new one "
            "was opened. End sessions it no longer uses (DELETE them, or close their streams); an idle "
            "streamable HTTP session also ends by itself after http_session_idle_timeout.",
            {},
        )

    async def _too_fast(self, scope: Scope, receive: Receive, send: Send, client: str, wait: float) -> None:
        assert self._new is not None
        retry_after = max(1, math.ceil(wait))
        self._refusals.refused(
            "429 new sessions", logging.WARNING, "refused a new session of %s: too many opened lately", client
        )
        await refuse(
            scope,
            receive,
            send,
            429,
            "too_many_new_sessions",
            f"{client} opened more than {self._new.burst} sessions within a minute (http_sessions_per_minute); "
            f"no new one was opened. Reuse the sessions it has, or retry after {retry_after} s.",
            {"Retry-After": str(retry_after)},
        )


def _is_listen(body: bytes) -> bool:
    if LISTEN_METHOD.encode() not in body:
        return False
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("method") == LISTEN_METHOD
