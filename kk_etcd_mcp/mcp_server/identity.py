"""Who is calling: the name and scope of the client behind the current MCP request.

Scopes nest: ``read`` may call read-only tools, ``write`` also the tools that change keys and
registrations, ``admin`` everything (users, roles, auth, cluster). Each transport names the client:
stdio has one, the user who started the server, with every scope (``stdio.py`` acts as ``STDIO``
around the whole session). Over HTTP the bearer token that was sent names the client: a static token
by its name, an OAuth access token by its subject (``http/oauth/``), with the scope its token scopes
map to (``http`` with every scope when HTTP runs on loopback without tokens). A request no transport
identified has no scope at all (``UNIDENTIFIED``): a transport that forgot to name its client fails
closed.

How it reaches a tool over HTTP: the middleware (``http/auth.py``) stores the identity in the ASGI scope as
``scope["user"]``. The MCP session runs in tasks of its own, apart from the HTTP request handler, so
a context variable set there would not be seen; but both HTTP transports hand each message's
starlette ``Request`` to the request context (``ctx.request``). The lowlevel middleware of
``scopes.py`` reads it there and sets ``_CURRENT`` around the handler, so ``current_identity()`` is
right inside any tool, resource or prompt, and in what they await. A request without a starlette
``Request`` (stdio, or an in-process client) keeps the identity its transport made current.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

Scope = Literal["read", "write", "admin"]
SCOPE_ORDER: tuple[Scope, ...] = ("read", "write", "admin")


@dataclass(frozen=True)
class ClientIdentity:
    name: str  # the bearer token's name, an OAuth token's subject, "stdio", or "http" when HTTP runs without tokens
    scope: Scope | None  # None: no scope, every tool is refused

    def allows(self, needed: Scope) -> bool:
        return self.scope is not None and SCOPE_ORDER.index(self.scope) >= SCOPE_ORDER.index(needed)


STDIO = ClientIdentity("stdio", "admin")
HTTP_WITHOUT_TOKEN = ClientIdentity("http", "admin")
# Whoever no transport identified (the HTTP middleware always names its client, stdio acts as STDIO).
UNIDENTIFIED = ClientIdentity("unidentified", None)

_CURRENT: contextvars.ContextVar[ClientIdentity] = contextvars.ContextVar("kk_etcd_mcp_identity", default=UNIDENTIFIED)


def current_identity() -> ClientIdentity:
    """The identity of the client whose request runs now; UNIDENTIFIED where no transport set one."""
    return _CURRENT.get()


@contextlib.contextmanager
def acting_as(identity: ClientIdentity) -> Iterator[None]:
    """Make ``identity`` the current one for the code inside the block."""
    token = _CURRENT.set(identity)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class IdentifiedUser(AuthenticatedUser):
    """``scope["user"]`` of an HTTP request: the identity, shaped as mcp's authenticated user.

    mcp's transports bind a session to the user that opened it (client ID, issuer, subject): a
    request carrying another token is answered as if the session did not exist, so a ``read`` token
    cannot post into an ``admin`` client's session. A static token's principal is its name; an OAuth
    client's (``principal``) its client ID, issuer and subject, so the session outlives a token
    refresh. The access token held here carries the name, never the secret.
    """

    def __init__(self, identity: ClientIdentity, principal: AccessToken | None = None) -> None:
        scopes: list[str] = [identity.scope] if identity.scope is not None else []
        own = AccessToken(token=identity.name, client_id=identity.name, scopes=scopes)
        super().__init__(principal or own)
        self.client = identity
        self.oauth = principal is not None


def identity_of_request(request: Any) -> ClientIdentity:
    """The identity an HTTP middleware attached to ``request`` (a starlette Request); without a request
    (not HTTP), the one the transport made current, which is UNIDENTIFIED unless it set one."""
    if request is None:
        return current_identity()
    scope = getattr(request, "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
    return user.client if isinstance(user, IdentifiedUser) else UNIDENTIFIED
