"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for each request's head, and without Nagle's delay.

uvicorn waits for a request's headers as long as bytes keep coming, and for the first byte of a
connection forever: twenty connections sending a header line every few seconds (slowloris) hold
twenty connections and their buffers for as long as they like. Here a request's head must arrive
in full within ``http_header_timeout`` seconds of the connection opening, or of the previous
response on it; otherwise the connection gets 408 and is closed. (A late body is BodyLimit's.)

Each connection gets TCP_NODELAY. asyncio sets it only on sockets whose ``proto`` is IPPROTO_TCP, and
ours are accepted from ``socket.create_server``'s listener (proto 0): h11 writes a response's head and
body separately, and Nagle held the body back until the client's delayed ACK, 40 ms on Linux, for
every call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .refusals import RefusalLog

log = logging.getLogger(__name__)


def head_timeout_protocol(seconds: float, refusals: RefusalLog) -> type[H11Protocol]:
    """The protocol class to give uvicorn.Config(http=...)."""
    return type("HeadTimeoutH11Protocol", (HeadTimeoutH11Protocol,), {"head_timeout": seconds, "refusals": refusals})


class HeadTimeoutH11Protocol(H11Protocol):
    head_timeout: float = 10.0
    refusals = RefusalLog(log, 0)
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._await_head()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a whole head has arrived
            self._stop_head_timer()

    def on_response_complete(self) -> None:
        self._await_head()  # before the next request's events, which the parent may handle at once
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_late)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        address = self.client[0] if self.client else "unknown"
        self.refusals.refused(
            "408 head",
            logging.WARNING,
            "closed a connection from %s: no request head within %gs",
            address,
            self.head_timeout,
        )
        message = (
            f"the request's headers did not arrive within {self.head_timeout:g} s (http_header_timeout); "
            "the connection is closed. Send each request whole."
        )
        body = json.dumps({"error": "request_timeout", "message": message}).encode()
        head = (
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()
