"""Request limits: a token bucket per client (429) and a cap on the body size (413)."""

import logging
import math
import time
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import identity_of
from .refusals import client_address, refuse

log = logging.getLogger(__name__)


@dataclass
class TokenBucket:
    """``rate`` requests per second on average, ``burst`` at once."""

    rate: float
    burst: int
    level: float
    stamp: float

    def take(self, now: float) -> float:
        """Take one request: 0 if allowed, else the seconds until one would be."""
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / self.rate


class RateLimit:
    """A token bucket per client for MCP POSTs: per token name, or per IP address without tokens.

    The SSE stream (GET) and session ends (DELETE) do not count. Over the limit: 429 with
    Retry-After (whole seconds) and nothing done.
    """

    MAX_CLIENTS = 10_000  # buckets kept; full (idle) ones are dropped beyond it

    def __init__(self, app: ASGIApp, rate: float, burst: int, *, by_token: bool) -> None:
        self.app = app
        self.rate, self.burst, self.by_token = rate, burst, by_token
        self._buckets: dict[str, TokenBucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            client = f"token {identity_of(scope).name}" if self.by_token else f"address {client_address(scope)}"
            wait = self._take(client, time.monotonic())
            if wait > 0:
                retry_after = max(1, math.ceil(wait))
                log.info("rate-limited %s: over %g requests/s", client, self.rate)
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

    def _take(self, client: str, now: float) -> float:
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.MAX_CLIENTS:
                self._drop_idle(now)
            bucket = self._buckets[client] = TokenBucket(self.rate, self.burst, float(self.burst), now)
        return bucket.take(now)

    def _drop_idle(self, now: float) -> None:
        full_after = self.burst / self.rate
        for client in [c for c, b in self._buckets.items() if now - b.stamp >= full_after]:
            del self._buckets[client]


class BodyLimit:
    """413 for a POST body over ``limit`` bytes: declared (Content-Length) or counted as it streams.

    The body is read up to the limit before the MCP app sees any of it, so an oversized request is
    refused before anything is parsed, and the rest of it is never read.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

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
        while True:
            message = await receive()
            if message["type"] != "http.request":
                trailing.append(message)  # e.g. http.disconnect: hand it on
                break
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        pending = [{"type": "http.request", "body": bytes(body), "more_body": False}, *trailing]

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        log.warning("refused an HTTP request from %s: body over %d bytes", client_address(scope), self.limit)
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
