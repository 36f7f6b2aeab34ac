"""Request limits: a token bucket per client (429), a cap on the body size (413) and on its time (408)."""

import logging
import math

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import identity_of
from .buckets import Buckets
from .refusals import RefusalLog, client_address, refuse

log = logging.getLogger(__name__)


def client_key(scope: Scope, by_token: bool) -> str:
    """Whom a per-client limit counts: the token's name, or the address when no tokens are configured."""
    return f"token {identity_of(scope).name}" if by_token else f"address {client_address(scope)}"


async def read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The body of a request inside ``BodyLimit`` (which hands it on whole, in one message), and a
    receive that gives that message again to the app after the caller."""
    message = await receive()
    body = message.get("body", b"") if message["type"] == "http.request" else b""
    pending = [message]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return body, replay


class RateLimit:
    """A token bucket per client for MCP POSTs: per token name, or per IP address without tokens.

    The SSE stream (GET) and session ends (DELETE) do not count. Over the limit: 429 with
    Retry-After (whole seconds) and nothing done.
    """

    def __init__(
        self, app: ASGIApp, rate: float, burst: int, *, by_token: bool, refusals: RefusalLog | None = None
    ) -> None:
        self.app = app
        self.rate, self.burst, self.by_token = rate, burst, by_token
        self._buckets = Buckets(rate, burst)
        self._refusals = refusals or RefusalLog(log, 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            client = client_key(scope, self.by_token)
            wait = self._buckets.take(client)
            if wait > 0:
                retry_after = max(1, math.ceil(wait))
                self._refusals.refused(
                    "429 requests", logging.INFO, "rate-limited %s: over %g requests/s", client, self.rate
                )
                await refuse(
                    scope,
                    receive,
                    send,
                    429,
                    "rate_limited",
                    f"too many requests from {client}: at most {self.rate:g} per second (bursts of {self.burst}) "
                    f"are accepted. This request was not processed; retry after {retry_after} s.",
                    {"Retry-After": str(retry_after)},
                )
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for a POST body over ``limit`` bytes: declared (Content-Length) or counted as it streams;
    408 for one that has not arrived in full within ``timeout`` seconds (a client trickling it).

    The body is read up to the limit before the MCP app sees any of it, so an oversized or late
    request is refused before anything is parsed, and the rest of it is never read.
    """

    def __init__(self, app: ASGIApp, limit: int, timeout: float = math.inf, refusals: RefusalLog | None = None) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout
        self._refusals = refusals or RefusalLog(log, 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send)
            return
        body = bytearray()
        trailing: list[Message] = []
        with anyio.move_on_after(self.timeout) as reading:
            while len(body) <= self.limit:
                message = await receive()
                if message["type"] != "http.request":
                    trailing.append(message)  # e.g. http.disconnect: hand it on
                    break
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
        if len(body) > self.limit:
            await self._too_large(scope, receive, send)
            return
        if reading.cancelled_caught:
            await self._too_slow(scope, receive, send, len(body))
            return
        pending = [{"type": "http.request", "body": bytes(body), "more_body": False}, *trailing]

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._refusals.refused(
            "413",
            logging.WARNING,
            "refused an HTTP request from %s: body over %d bytes",
            client_address(scope),
            self.limit,
        )
        await refuse(
            scope,
            receive,
            send,
            413,
            "request_too_large",
            f"the request body is larger than {self.limit} bytes (http_max_body_bytes); it was not processed. "
            "Send smaller values, or split a kv_import document.",
            {"Connection": "close"},
        )

    async def _too_slow(self, scope: Scope, receive: Receive, send: Send, received: int) -> None:
        self._refusals.refused(
            "408 body",
            logging.WARNING,
            "refused an HTTP request from %s: its body did not arrive within %gs",
            client_address(scope),
            self.timeout,
        )
        await refuse(
            scope,
            receive,
            send,
            408,
            "request_timeout",
            f"the request body did not arrive in full within {self.timeout:g} s (http_body_timeout; "
            f"{received} bytes came); it was not processed. Send the whole request at once.",
            {"Connection": "close"},
        )
