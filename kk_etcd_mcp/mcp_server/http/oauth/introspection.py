"""Opaque access tokens, checked by asking the issuer (token introspection, RFC 7662).

This server authenticates to the introspection endpoint as its own client (HTTP Basic with the
client ID and secret, form-encoded as RFC 6749 §2.3.1 says). An answer is accepted only when it is
``active``, names the configured issuer (if it names one), holds the audience in ``aud`` (the
audience cannot be confirmed otherwise, so an answer without ``aud`` is refused), and its
``exp``/``nbf`` hold. An accepted answer is reused for at most ``CACHE_SECONDS`` (and never past
the token's expiry): a revoked token stops working within that time.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any
from urllib.parse import quote

from .errors import AuthServerUnavailable, TokenRejected, shown
from .fetch import post_form
from .jwt_access import LEEWAY_SECONDS


class Introspector:
    CACHE_SECONDS = 30.0
    MAX_CACHED = 10_000

    def __init__(
        self, url: str, client_id: str, client_secret: str, *, issuer: str, audience: str, timeout: float
    ) -> None:
        self.url, self.issuer, self.audience, self.timeout = url, issuer, audience, timeout
        credentials = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
        self._authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
        self._cache: dict[bytes, tuple[float, dict[str, Any]]] = {}  # sha256(token) -> (until, claims)

    async def introspect(self, token: str) -> dict[str, Any]:
        """The token's claims as the issuer states them; TokenRejected if not usable here."""
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
        answer = await post_form(
            self.url,
            {"token": token, "token_type_hint": "access_token"},
            {"Authorization": self._authorization},
            self.timeout,
        )
        claims = self._accepted(answer)
        self._remember(digest, claims)
        return claims

    def _accepted(self, answer: dict[str, Any]) -> dict[str, Any]:
        active = answer.get("active")
        if not isinstance(active, bool):
            raise AuthServerUnavailable(f"{self.url} answered without the active field of an introspection")
        if not active:
            raise TokenRejected(f"{self.issuer} says the access token is not active (expired, revoked or unknown)")
        if answer.get("iss", self.issuer) != self.issuer:
            raise TokenRejected(f"the access token was issued by {shown(answer.get('iss'))}, not {self.issuer}")
        audiences = answer.get("aud")
        if isinstance(audiences, str):
            audiences = [audiences]
        if not isinstance(audiences, list) or self.audience not in audiences:
            raise TokenRejected(
                f"the access token was issued for {shown(answer.get('aud'))}, not for {self.audience}: ask for a token "
                f"with resource={self.audience}"
            )
        now = time.time()
        exp, nbf = answer.get("exp"), answer.get("nbf")
        if isinstance(exp, int | float) and exp < now - LEEWAY_SECONDS:
            raise TokenRejected("the access token has expired; get a new one")
        if isinstance(nbf, int | float) and nbf > now + LEEWAY_SECONDS:
            raise TokenRejected("the access token is not valid yet (nbf in the future)")
        return {"iss": self.issuer, **answer}

    def _remember(self, digest: bytes, claims: dict[str, Any]) -> None:
        now = time.monotonic()
        lifetime = self.CACHE_SECONDS
        exp = claims.get("exp")
        if isinstance(exp, int | float):
            lifetime = min(lifetime, exp - time.time())
        if lifetime <= 0:
            return
        if len(self._cache) >= self.MAX_CACHED:
            self._cache = {d: entry for d, entry in self._cache.items() if entry[0] > now}
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.pop(next(iter(self._cache)))  # the oldest
        self._cache[digest] = (now + lifetime, claims)
