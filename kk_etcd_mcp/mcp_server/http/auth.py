"""Bearer tokens: which client sends a request, by a static named token or an OAuth access token.

A request that names no valid client is refused, and how depends on whether OAuth is configured:

- ``oauth_issuer`` set: 401 with ``WWW-Authenticate: Bearer resource_metadata="..."`` (and
  ``error="invalid_token"`` with the reason when a token was sent), as the MCP authorization spec
  requires: the client reads the metadata and gets a token from the authorization server. A valid
  token that grants none of our scopes gets 403 ``insufficient_scope`` naming the scope needed. If
  the authorization server cannot be asked (its keys cannot be fetched), 503: the token is neither
  accepted nor blamed.
- only static tokens: 403 with the reason in the body, and no challenge. In MCP a 401 means "get an
  OAuth access token": the MCP Inspector and the TypeScript SDK's clients start OAuth discovery on
  any 401, a flow that cannot succeed here and never shows why. These tokens are configured out of
  band, so a request without one is refused as forbidden, which clients show as it is.

Static tokens are looked at first and keep working beside OAuth. Guessing tokens is slowed down per
address, before any token is looked at: an address whose requests failed authentication
``auth_failures_per_minute`` times within a minute gets 429 until the minute has passed (a valid
token from it too); a request without a token, or with a refused one, counts. Refusals are logged
at a bounded rate.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ...settings import HttpToken
from ..identity import HTTP_WITHOUT_TOKEN, ClientIdentity, IdentifiedUser
from .buckets import per_minute
from .oauth import AuthServerUnavailable, OAuthResource, TokenRejected
from .refusals import RefusalLog, client_address, refuse

log = logging.getLogger(__name__)

UNAVAILABLE_RETRY_SECONDS = 5


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str
    message: str  # for the client
    logged: str  # for the log line: short, and never the token
    headers: dict[str, str] = field(default_factory=dict)
    failed_authentication: bool = True  # counts towards the address's wrong tokens
    level: int = logging.INFO


class ClientAuth:
    """Puts the client's identity in ``scope["user"]``; refuses a request without one (see the module docstring).

    Static tokens are compared as SHA-256 digests with ``hmac.compare_digest``, against every
    configured token, so the time taken says nothing about which token (or how much of one) matched.
    """

    def __init__(
        self,
        app: ASGIApp,
        tokens: Sequence[HttpToken],
        *,
        oauth: OAuthResource | None = None,
        auth_failures_per_minute: int = 0,
        refusals: RefusalLog | None = None,
    ) -> None:
        self.app = app
        # The users are made once (each is a pydantic AccessToken): a request only picks its own.
        self._tokens = [
            (_digest(t.token.get_secret_value()), IdentifiedUser(ClientIdentity(t.name, t.scope))) for t in tokens
        ]
        self._without_token = IdentifiedUser(HTTP_WITHOUT_TOKEN)
        self._oauth = oauth
        checked = bool(tokens) or oauth is not None
        self._failures = per_minute(auth_failures_per_minute) if checked and auth_failures_per_minute else None
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
            found = await self._identify(Headers(scope=scope).get("authorization", ""))
            if isinstance(found, Refusal):
                if self._failures is not None and found.failed_authentication:
                    self._failures.take(address)
                kind = f"{found.status} {found.error}"
                self._refusals.refused(kind, found.level, "refused an HTTP request from %s: %s", address, found.logged)
                await refuse(scope, receive, send, found.status, found.error, found.message, found.headers)
                return
            scope["user"] = found
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

    async def _identify(self, authorization: str) -> IdentifiedUser | Refusal:
        if not self._tokens and self._oauth is None:
            return self._without_token
        scheme, _, given = authorization.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:  # the scheme is case-insensitive (RFC 7235)
            return self._no_token()
        user = self._static(given)
        if user is not None:
            return user
        if self._oauth is None:
            return self._no_token()
        return await self._oauth_user(self._oauth, given)

    def _static(self, given: str) -> IdentifiedUser | None:
        digest = _digest(given)
        found = None
        for expected, user in self._tokens:  # no early exit
            if hmac.compare_digest(digest, expected) and found is None:
                found = user
        return found

    def _no_token(self) -> Refusal:
        if self._oauth is None:
            return Refusal(
                403,
                "unauthorized",
                "this server needs one of its configured bearer tokens (it does not do OAuth): send "
                "'Authorization: Bearer <token>'",
                "no valid bearer token",
            )
        return Refusal(
            401,
            "unauthorized",
            f"this server needs an access token from {self._oauth.issuer} for {self._oauth.resource_url} (see "
            f"{self._oauth.metadata_url}), or one of its configured bearer tokens: send "
            "'Authorization: Bearer <token>'",
            "no bearer token",
            {"WWW-Authenticate": self._oauth.challenge()},
        )

    async def _oauth_user(self, oauth: OAuthResource, token: str) -> IdentifiedUser | Refusal:
        try:
            user = await oauth.authenticate(token)
        except TokenRejected as exc:
            challenge = oauth.challenge("invalid_token", str(exc))
            logged = f"invalid access token: {exc}"
            return Refusal(401, "invalid_token", str(exc), logged, {"WWW-Authenticate": challenge})
        except AuthServerUnavailable as exc:
            return Refusal(
                503,
                "temporarily_unavailable",
                f"this server cannot check the access token now: {exc}. Retry in a moment.",
                f"cannot check an access token: {exc}",
                {"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)},
                failed_authentication=False,
                level=logging.WARNING,
            )
        if user is None:
            needed = oauth.scopes.name("read")
            message = (
                f"the access token grants none of this server's scopes ({', '.join(oauth.scopes.all())}); "
                f"ask for at least {needed}"
            )
            challenge = oauth.challenge("insufficient_scope", message, scope=needed)
            logged = "an access token that grants none of our scopes"
            return Refusal(403, "insufficient_scope", message, logged, {"WWW-Authenticate": challenge}, False)
        return user


def identity_of(scope: Scope) -> ClientIdentity:
    user = scope.get("user")
    return user.client if isinstance(user, IdentifiedUser) else HTTP_WITHOUT_TOKEN


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
