"""JWT access tokens (RFC 9068), checked here with the issuer's public keys; PyJWT does the cryptography.

Accepted only when all of these hold:

- signed with an asymmetric algorithm (RS*, PS*, ES*, EdDSA): ``alg: none`` and HMAC (HS*), with
  which a public key could be misused as the secret, are refused before any key is looked at;
- the key the header names (``kid``) is one the issuer publishes, of the type and curve the
  algorithm needs, and the signature verifies with it;
- ``iss`` is exactly the issuer, ``aud`` holds the audience (RFC 8707's resource indicator),
  ``exp`` has not passed and ``nbf``/``iat`` are not in the future, each with ``LEEWAY_SECONDS``
  for clocks that disagree a little;
- the header's ``typ``, if any, is that of a JWT or an access token; the token carries no ``crit``
  header (no extension understood here) and is not sender-constrained (``cnf``: DPoP or mTLS
  binding, which a bearer check would silently defeat).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
from jwt.exceptions import (
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidSignatureError,
    InvalidTokenError,
    MissingRequiredClaimError,
    PyJWTError,
)

from .errors import TokenRejected, shown
from .keys import KEY_TYPES, SigningKeys

LEEWAY_SECONDS = 30
ACCEPTED_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts whose first is a JSON object (a JWS in compact form)."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:
        return False
    return isinstance(header, dict)


async def verify_jwt(token: str, keys: SigningKeys, *, issuer: str, audience: str) -> dict[str, Any]:
    """The token's claims once every check above passed; TokenRejected saying which one failed."""
    try:
        header = jwt.get_unverified_header(token)
    except InvalidTokenError:
        raise TokenRejected("the access token is not a well-formed JWT") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise TokenRejected("the access token is unsigned (alg none)")
    if alg not in KEY_TYPES:
        raise TokenRejected(
            f"the access token is signed with {shown(alg)}; only the issuer's public-key signatures "
            f"({', '.join(KEY_TYPES)}) are accepted"
        )
    if "crit" in header:
        raise TokenRejected("the access token has a crit header, which this server does not understand")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES):
        raise TokenRejected(f"the access token's type {shown(typ)} is not that of an access token")
    kid = header.get("kid")
    key = await keys.key(kid if isinstance(kid, str) else None)
    if not key.fits(alg):
        raise TokenRejected(f"the access token's algorithm {alg} does not fit the {key.jwk.key_type} key it names")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.jwk.key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"]},
        )
    except InvalidSignatureError:
        raise TokenRejected(
            "the access token's signature does not verify (altered, or not signed by the issuer)"
        ) from None
    except ExpiredSignatureError:
        raise TokenRejected("the access token has expired; get a new one") from None
    except ImmatureSignatureError:
        raise TokenRejected("the access token is not valid yet (nbf or iat in the future)") from None
    except InvalidAudienceError:
        seen = _unverified(token).get("aud")
        raise TokenRejected(
            f"the access token was issued for {shown(seen)}, not for {audience}: ask for a token with "
            f"resource={audience}"
        ) from None
    except InvalidIssuerError:
        seen = _unverified(token).get("iss")
        raise TokenRejected(f"the access token was issued by {shown(seen)}, not {issuer}") from None
    except MissingRequiredClaimError as exc:
        raise TokenRejected(f"the access token has no {exc.claim} claim") from None
    except PyJWTError as exc:  # any other check PyJWT makes (its messages quote no token)
        raise TokenRejected(f"the access token is not valid: {exc}") from None
    if "cnf" in claims:
        raise TokenRejected(
            "the access token is bound to a key (cnf: DPoP or mTLS), which this server does not check; "
            "ask for a plain bearer token"
        )
    return claims


def _unverified(token: str) -> dict[str, Any]:
    # Only to word a refusal: the signature was verified before an audience or issuer check fails.
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims
