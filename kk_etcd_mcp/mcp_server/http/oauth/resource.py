"""This server as an OAuth 2.1 resource server: its resource URL, the scope names, who a token names.

The resource URL is ``public_url`` plus the transport's path (``/mcp`` or ``/sse``): what clients
connect to, what they name as the RFC 8707 resource when they ask for a token, and the ``resource``
of the Protected Resource Metadata. Tokens must carry ``oauth_audience`` in ``aud`` (by default that
same URL; some providers issue a fixed audience such as an API identifier instead).

Our scopes nest (read < write < admin); a token's scopes are mapped through ``oauth_scope_*`` and
its client gets the highest one it holds. The client's name, in logs and the audit trail, is the
``oauth_client_claim`` claim (``sub`` by default), else the token's ``client_id``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_resource_metadata_url
from pydantic import AnyHttpUrl

from ....settings import Settings
from ...identity import SCOPE_ORDER, ClientIdentity, IdentifiedUser, Scope
from .errors import TokenRejected, printable
from .introspection import Introspector
from .verifier import OAuthVerifier


@dataclass(frozen=True)
class ScopeNames:
    """Which token scope grants which of our scopes."""

    read: str
    write: str
    admin: str

    def name(self, scope: Scope) -> str:
        return {"read": self.read, "write": self.write, "admin": self.admin}[scope]

    def all(self) -> list[str]:
        return [self.name(scope) for scope in SCOPE_ORDER]

    def granted(self, token_scopes: Iterable[str]) -> Scope | None:
        """The highest of our scopes the token's scopes grant; None for none."""
        held = set(token_scopes)
        return next((scope for scope in reversed(SCOPE_ORDER) if self.name(scope) in held), None)


class OAuthResource:
    def __init__(self, settings: Settings, path: str) -> None:
        assert settings.oauth_issuer is not None
        self.issuer = settings.oauth_issuer
        self.resource_url = settings.base_url() + path
        self.metadata_url = str(build_resource_metadata_url(AnyHttpUrl(self.resource_url)))
        self.audience = settings.oauth_audience or self.resource_url
        self.scopes = ScopeNames(settings.oauth_scope_read, settings.oauth_scope_write, settings.oauth_scope_admin)
        self.client_claim = settings.oauth_client_claim
        introspector = None
        if settings.oauth_introspection_url is not None:
            client_id, secret = settings.oauth_introspection_client_id, settings.oauth_introspection_secret()
            assert client_id is not None and secret is not None  # Settings checked they are given
            introspector = Introspector(
                settings.oauth_introspection_url,
                client_id,
                secret,
                issuer=self.issuer,
                audience=self.audience,
                timeout=settings.oauth_timeout,
            )
        self.verifier = OAuthVerifier(
            issuer=self.issuer,
            audience=self.audience,
            jwks_url=settings.oauth_jwks_url,
            introspector=introspector,
            timeout=settings.oauth_timeout,
            refetch_interval=settings.oauth_jwks_refetch_interval,
        )

    async def authenticate(self, token: str) -> IdentifiedUser | None:
        """The user a valid token names, None when it grants none of our scopes; TokenRejected or
        AuthServerUnavailable when it cannot be accepted."""
        access = await self.verifier.verify(token)
        scope = self.scopes.granted(access.scopes)
        if scope is None:
            return None
        name = self._client_name(access)
        principal = AccessToken(
            token=name,
            client_id=access.client_id or name,
            scopes=[scope],
            expires_at=access.expires_at,
            resource=access.resource,
            subject=access.subject,
            claims={"iss": self.issuer},  # what mcp binds a session to: client, issuer and subject
        )
        return IdentifiedUser(ClientIdentity(name, scope), principal)

    def _client_name(self, access: AccessToken) -> str:
        value = (access.claims or {}).get(self.client_claim)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
        if access.client_id:
            return access.client_id
        raise TokenRejected(f"the access token names no client: it has no {self.client_claim} or client_id claim")

    def challenge(self, error: str | None = None, description: str | None = None, scope: str | None = None) -> str:
        """The ``WWW-Authenticate`` value (RFC 6750 §3, RFC 9728 §5.1): where the metadata is, and what went wrong.

        The 401 names no scope: clients then ask for every scope in the metadata and the provider grants
        what the client may have. Naming only ``read`` there would leave a client that could write with a
        read token, shown only read-only tools, so it would never call a tool that asks it to step up."""
        parts = []
        if error is not None:
            parts.append(f'error="{error}"')
        if scope is not None:
            parts.append(f'scope="{scope}"')
        parts.append(f'resource_metadata="{self.metadata_url}"')
        if description is not None:
            parts.append(f'error_description="{printable(description)}"')
        return "Bearer " + ", ".join(parts)
