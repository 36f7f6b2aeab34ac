"""The issuer's signing keys (its JWKS), fetched when first needed and kept.

- Kept ``MAX_AGE`` seconds, then fetched again when next used, so a key the issuer withdrew stops
  working; if that fetch fails, the keys held stay in use: an unreachable authorization server
  does not stop tokens signed with keys already known.
- A token naming a key ID not held (the issuer rotated its keys) fetches the set again, at most
  once per ``refetch_interval`` seconds, so tokens with made-up key IDs cannot make this server
  hammer the issuer.
- One fetch at a time, bounded by the timeout: requests that need it wait for the one under way;
  requests whose key is held do not wait at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from .errors import AuthServerUnavailable, TokenRejected
from .fetch import get_json

log = logging.getLogger(__name__)

# The key type each signature algorithm needs (RFC 7518 §3.1, RFC 8037); symmetric (HS*) ones are never accepted.
KEY_TYPES = {
    **{f"{family}{bits}": "RSA" for family in ("RS", "PS") for bits in (256, 384, 512)},
    **{alg: "EC" for alg in ("ES256", "ES384", "ES512")},
    "EdDSA": "OKP",
}
KEY_FAMILIES = frozenset(KEY_TYPES.values())


@dataclass(frozen=True)
class SigningKey:
    jwk: PyJWK
    declared_alg: str | None  # the JWK's own "alg", when it names one

    def fits(self, alg: str) -> bool:
        """Whether a signature made with ``alg`` may be checked with this key: the key's type, and for
        EC and OKP its curve (PyJWT derives the algorithm from it), or the algorithm the key declares."""
        if KEY_TYPES.get(alg) != self.jwk.key_type:
            return False
        if self.declared_alg is not None or self.jwk.key_type != "RSA":
            return self.jwk.algorithm_name == alg
        return True


def signing_keys(document: dict[str, Any]) -> list[SigningKey]:
    """The public signing keys of a JWKS document that PyJWT can use; encryption and symmetric keys left out."""
    found = []
    entries = document.get("keys")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") not in KEY_FAMILIES:
            continue
        try:
            jwk = PyJWK(entry)
        except PyJWTError:
            continue  # a key type or curve PyJWT does not support: tokens naming it are refused as unknown
        alg = entry.get("alg")
        found.append(SigningKey(jwk, alg if isinstance(alg, str) else None))
    return found


class SigningKeys:
    MAX_AGE = 300.0

    def __init__(
        self, locate: Callable[[], Awaitable[str]], *, timeout: float, refetch_interval: float, issuer: str
    ) -> None:
        """``locate``: the JWKS URL (the setting, or the issuer's metadata)."""
        self._locate = locate
        self.timeout, self.refetch_interval, self.issuer = timeout, refetch_interval, issuer
        self._by_kid: dict[str, SigningKey] = {}
        self._all: list[SigningKey] = []
        self._fetched_at: float | None = None  # last successful fetch (monotonic)
        self._attempted_at: float | None = None  # last fetch, whatever its outcome
        self._failure: str | None = None  # why the last fetch failed; None when it worked
        self._lock = anyio.Lock()

    async def key(self, kid: str | None) -> SigningKey:
        """The key a token names; TokenRejected if the issuer does not publish it, AuthServerUnavailable if
        its keys could not be fetched to find out."""
        held = self._find(kid)
        if held is not None:
            if self._fresh() or self._lock.locked() or not self._may_fetch():
                return held
            async with self._lock:
                if not self._fresh() and self._may_fetch():  # not done by another request meanwhile
                    try:
                        await self._fetch()
                    except AuthServerUnavailable as exc:
                        log.warning("%s; the %d signing keys fetched before stay in use", exc, len(self._all))
            return self._require(kid)
        async with self._lock:
            if self._find(kid) is None and self._may_fetch():
                await self._fetch()
        if self._find(kid) is None and self._failure is not None:
            raise AuthServerUnavailable(self._failure)
        return self._require(kid)

    def _find(self, kid: str | None) -> SigningKey | None:
        if kid is not None:
            return self._by_kid.get(kid)
        return self._all[0] if len(self._all) == 1 else None

    def _require(self, kid: str | None) -> SigningKey:
        found = self._find(kid)
        if found is not None:
            return found
        if kid is None:
            raise TokenRejected(
                f"the access token names no signing key (kid), and {self.issuer} publishes {len(self._all)} keys"
            )
        raise TokenRejected(f"the access token is signed with a key {self.issuer} does not publish (kid {kid!r})")

    def _fresh(self) -> bool:
        return self._fetched_at is not None and time.monotonic() - self._fetched_at < self.MAX_AGE

    def _may_fetch(self) -> bool:
        return self._attempted_at is None or time.monotonic() - self._attempted_at >= self.refetch_interval

    async def _fetch(self) -> None:
        self._attempted_at = time.monotonic()
        try:
            with anyio.fail_after(self.timeout):  # metadata and keys together, however many URLs are tried
                url = await self._locate()
                document = await get_json(url, self.timeout)
            keys = signing_keys(document)
            if not keys:
                raise AuthServerUnavailable(f"{url} holds no usable public signing key (RSA, EC or OKP)")
        except TimeoutError:
            self._failure = f"the signing keys of {self.issuer} could not be fetched within {self.timeout:g} s"
            raise AuthServerUnavailable(self._failure) from None
        except AuthServerUnavailable as exc:
            self._failure = f"the signing keys of {self.issuer} could not be fetched: {exc}"
            raise AuthServerUnavailable(self._failure) from None
        self._all = keys
        self._by_kid = {k.jwk.key_id: k for k in keys if k.jwk.key_id}
        self._fetched_at, self._failure = time.monotonic(), None
        log.info("fetched %d signing keys of %s from %s", len(keys), self.issuer, url)
