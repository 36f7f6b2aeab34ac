"""Bearer tokens: which named client sends a request (403 for none of the configured tokens).

Why 403 and not 401: in MCP a 401 means "get an OAuth access token". The MCP authorization spec has
clients start OAuth discovery on any 401 (falling back to the well-known metadata URLs when the
challenge names none), so the MCP Inspector and the TypeScript SDK's clients answer our 401 with an
OAuth flow that cannot succeed and never show why. This server does no OAuth (authorization is
optional in MCP): its tokens are configured out of band, so a request without one is refused as
forbidden, with the reason in the body, which clients show as it is.
"""

import hashlib
import hmac
import logging
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ...settings import HttpToken
from ..identity import HTTP_WITHOUT_TOKEN, ClientIdentity, IdentifiedUser
from .refusals import client_address, refuse

log = logging.getLogger(__name__)


class ClientAuth:
    """Puts the client's identity in ``scope["user"]``; 403 to a request without a configured token.

    Tokens are compared as SHA-256 digests with ``hmac.compare_digest``, against every configured
    token, so the time taken says nothing about which token (or how much of one) matched.
    """

    def __init__(self, app: ASGIApp, tokens: Sequence[HttpToken]) -> None:
        self.app = app
        self._tokens = [
            (hashlib.sha256(t.token.get_secret_value().encode()).digest(), ClientIdentity(t.name, t.scope))
            for t in tokens
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # no MCP route speaks it: refused rather than passed on unchecked
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] == "http":
            identity = self._identify(Headers(scope=scope).get("authorization", ""))
            if identity is None:
                log.info("refused an HTTP request from %s: no valid bearer token", client_address(scope))
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
