"""The access-token check: a JWT is verified locally, anything else introspected (when configured).

``OAuthVerifier`` is an mcp ``TokenVerifier`` (``verify_token``); ``verify`` is the same check
saying why a token is refused. Its ``AccessToken`` holds the claims, never the token.
"""

from __future__ import annotations

import hashlib
from typing import Any

from mcp.server.auth.provider import AccessToken

from .discovery import IssuerMetadata, discover
from .errors import AuthServerUnavailable, OAuthError, TokenRejected
from .introspection import Introspector
from .jwt_access import looks_like_jwt, verify_jwt
from .keys import SigningKeys

MAX_TOKEN_CHARS = 16 * 1024


class OAuthVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None,
        introspector: Introspector | None,
        timeout: float,
        refetch_interval: float,
    ) -> None:
        self.issuer, self.audience, self.timeout = issuer, audience, timeout
        self._jwks_url = jwks_url
        self._metadata: IssuerMetadata | None = None
        self.introspector = introspector
        self.keys = SigningKeys(self._locate_keys, timeout=timeout, refetch_interval=refetch_interval, issuer=issuer)

    async def verify(self, token: str) -> AccessToken:
        """The token's principal and claims; TokenRejected or AuthServerUnavailable, saying why not."""
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenRejected(f"the access token is longer than {MAX_TOKEN_CHARS} characters")
        if looks_like_jwt(token):
            claims = await verify_jwt(token, self.keys, issuer=self.issuer, audience=self.audience)
        elif token.count(".") == 4:
            raise TokenRejected("the access token is encrypted (JWE), which this server cannot read")
        elif self.introspector is not None:
            claims = await self.introspector.introspect(token)
        else:
            raise TokenRejected(
                "the access token is not a JWT, and this server does not introspect other tokens "
                "(oauth_introspection_url is not set)"
            )
        return access_token(token, claims, self.audience)

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            return await self.verify(token)
        except OAuthError:
            return None

    async def _locate_keys(self) -> str:
        if self._jwks_url is not None:
            return self._jwks_url
        if self._metadata is None:
            self._metadata = await discover(self.issuer, self.timeout)
        if self._metadata.jwks_uri is None:
            raise AuthServerUnavailable(f"the metadata of {self.issuer} names no jwks_uri; set oauth_jwks_url")
        return self._metadata.jwks_uri


def access_token(token: str, claims: dict[str, Any], audience: str) -> AccessToken:
    client_id = next((v for v in (claims.get("client_id"), claims.get("azp")) if isinstance(v, str) and v), "")
    expires = claims.get("exp")
    subject = claims.get("sub")
    return AccessToken(
        token="sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16],  # a fingerprint, never the token
        client_id=client_id,
        scopes=token_scopes(claims),
        expires_at=int(expires) if isinstance(expires, int | float) else None,
        resource=audience,
        subject=subject if isinstance(subject, str) else None,
        claims=claims,
    )


def token_scopes(claims: dict[str, Any]) -> list[str]:
    """``scope`` (RFC 9068, RFC 7662: space-separated), or ``scp`` as some providers name it; either may be a list."""
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list):
            return [item for item in value if isinstance(item, str)]
    return []
