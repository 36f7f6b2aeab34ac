"""Bearer tokens: which named client sends a request (403 for none of the configured tokens).

Why 403 and not 401: in MCP a 401 means "get an OAuth access token". The MCP authorization spec has
clients start OAuth discovery on any 401 (falling back to the well-known metadata URLs when the
challenge names none), so the MCP Inspector and the TypeScript SDK's clients answer our 401 with an
OAuth flow that cannot succeed and never show why. This server does no OAuth (authorization is
optional in MCP): its tokens are configured out of band, so a request without one is refused as
forbidden, with the reason in the body, which clients show as it is.

Guessing tokens is slowed down per address, before any token is looked at: an address whose
requests failed authentication ``auth_failures_per_minute`` times within a minute gets 429 until
the minute has passed (a valid token from it too). Refusals are logged at a bounded rate.
"""

import hashlib
import hmac
import logging
import math
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ...settings import HttpToken
from ..identity import HTTP_WITHOUT_TOKEN, ClientIdentity, IdentifiedUser
from .buckets import per_minute
from .refusals import RefusalLog, client_address, refuse

log = logging.getLogger(__name__)


class ClientAuth:
    """Puts the client's identity in ``scope["user"]``; 403 to a request without a configured token.

    Tokens are compared as SHA-256 digests with ``hmac.compare_digest``, against every configured
    token, so the time taken says nothing about which token (or how much of one) matched.
    """

    def __init__(
        self,
        app: ASGIApp,
        tokens: Sequence[HttpToken],
        *,
        auth_failures_per_minute: int = 0,
        refusals: RefusalLog | None = None,
    ) -> None:
        self.app = app
        self._tokens = [
            (hashlib.sha256(t.token.get_secret_value().encode()).digest(), ClientIdentity(t.name, t.scope))
            for t in tokens
        ]
        self._failures = per_minute(auth_failures_per_minute) if tokens and auth_failures_per_minute else None
        self._refusals = refusals or RefusalLog(log, 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # no MCP route speaks it: refused rather than passed on unchecked
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] == "http":
            address = client_address(scope)
            if self._failures is not None and (wait := self._failures.empty(address)):
                await self._too_many_failures(scope, receive, send, address, wait)
                return
            identity = self._identify(Headers(scope=scope).get("authorization", ""))
            if identity is None:
                if self._failures is not None:
                    self._failures.take(address)
                self._refusals.refused(
                    "403", logging.INFO, "refused an HTTP request from %s: no valid bearer token", address
                )
                await refuse(
                    scope,
                    receive,
                    send,
                    403,
                    "unauthorized",
                    "this server needs one of its configured bearer tokens (it does not do OAuth): send "
                    "'Authorization: Bearer <token>'",
                    {},
                )
                return
            scope["user"] = IdentifiedUser(identity)
        await self.app(scope, receive, send)

    async def _too_many_failures(self, scope: Scope, receive: Receive, send: Send, address: str, wait: float) -> None:
        assert self._failures is not None
        retry_after = max(1, math.ceil(wait))
        self._refusals.refused(
            "429 bad tokens", logging.WARNING, "refused an HTTP request from %s: too many bad tokens from it", address
        )
        await refuse(
            scope,
            receive,
            send,
            429,
            "too_many_failed_authentications",
            f"too many requests from {address} failed authentication (at most {self._failures.burst} a minute); "
            f"this request was not processed. Check the bearer token, and retry after {retry_after} s.",
            {"Retry-After": str(retry_after)},
        )

    def _identify(self, authorization: str) -> ClientIdentity | None:
        if not self._tokens:
            return HTTP_WITHOUT_TOKEN
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer":  # the scheme is case-insensitive (RFC 7235)
            return None
        digest = hashlib.sha256(given.strip().encode()).digest()
        found = None
        for expected, identity in self._tokens:  # no early exit
            if hmac.compare_digest(digest, expected) and found is None:
                found = identity
        return found


def identity_of(scope: Scope) -> ClientIdentity:
    user = scope.get("user")
    return user.client if isinstance(user, IdentifiedUser) else HTTP_WITHOUT_TOKEN
