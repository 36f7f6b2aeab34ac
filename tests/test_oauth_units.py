"""The OAuth pieces that need no server: scope mapping, key selection, token shapes, header text."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kk_etcd_mcp.mcp_server.http.oauth import ScopeNames
from kk_etcd_mcp.mcp_server.http.oauth.errors import printable, shown
from kk_etcd_mcp.mcp_server.http.oauth.jwt_access import looks_like_jwt
from kk_etcd_mcp.mcp_server.http.oauth.keys import signing_keys
from kk_etcd_mcp.mcp_server.http.oauth.verifier import token_scopes

NAMES = ScopeNames("etcd:read", "etcd:write", "etcd:admin")


@pytest.mark.parametrize(
    ("held", "granted"),
    [
        ([], None),
        (["openid", "profile"], None),
        (["etcd:read"], "read"),
        (["etcd:write"], "write"),
        (["etcd:read", "etcd:admin"], "admin"),
        (["etcd:admin", "etcd:write", "etcd:read"], "admin"),
        (["ETCD:READ"], None),  # scopes are case-sensitive (RFC 6749 §3.3)
    ],
)
def test_a_token_gets_the_highest_scope_it_holds(held: list[str], granted: str | None) -> None:
    assert NAMES.granted(held) == granted


@pytest.mark.parametrize(
    ("claims", "scopes"),
    [
        ({"scope": "etcd:read profile"}, ["etcd:read", "profile"]),
        ({"scope": ["etcd:write"]}, ["etcd:write"]),
        ({"scp": "etcd:admin"}, ["etcd:admin"]),  # Entra ID, Okta
        ({"scp": ["etcd:read", 7]}, ["etcd:read"]),
        ({"scope": 3}, []),
        ({}, []),
    ],
)
def test_token_scopes_from_scope_or_scp(claims: dict[str, Any], scopes: list[str]) -> None:
    assert token_scopes(claims) == scopes


def _jwk(private: Any, **extra: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    public: dict[str, Any] = json.loads(algorithm.to_jwk(private.public_key()))
    return {**public, **extra}


def test_signing_keys_are_public_signature_keys_whose_algorithm_fits() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p256, p384 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1())
    document = {
        "keys": [
            _jwk(rsa_key, kid="rsa"),
            _jwk(rsa_key, kid="rsa-ps", alg="PS256"),
            _jwk(p256, kid="p256"),
            _jwk(p384, kid="p384"),
            _jwk(rsa_key, kid="encryption", use="enc"),
            {"kty": "oct", "kid": "symmetric", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AA", "y": "AA"},
            "not a key",
        ]
    }
    keys = {key.jwk.key_id: key for key in signing_keys(document)}
    assert set(keys) == {"rsa", "rsa-ps", "p256", "p384"}
    assert keys["rsa"].fits("RS256") and keys["rsa"].fits("PS512")  # an RSA key that declares no algorithm
    assert keys["rsa-ps"].fits("PS256") and not keys["rsa-ps"].fits("RS256")  # one that does
    assert keys["p256"].fits("ES256") and not keys["p256"].fits("ES384")  # the curve decides
    assert keys["p384"].fits("ES384") and not keys["p384"].fits("ES256")
    assert not keys["rsa"].fits("ES256") and not keys["p256"].fits("RS256")
    assert not any(key.fits(alg) for key in keys.values() for alg in ("HS256", "none"))
    assert signing_keys({"keys": "nope"}) == [] and signing_keys({}) == []


@pytest.mark.parametrize(
    ("token", "is_jwt"),
    [
        ("eyJhbGciOiJFUzI1NiJ9.e30.c2ln", True),
        ("a.b.c", False),
        ("opaque-token", False),
        ("eyJhbGciOiJFUzI1NiJ9.e30", False),
        ("eyJhbGciOiJFUzI1NiJ9.a.b.c.d", False),
        ("WzFd.e30.c2ln", False),  # a JSON array, not a header
    ],
)
def test_what_looks_like_a_jwt(token: str, is_jwt: bool) -> None:
    assert looks_like_jwt(token) is is_jwt


def test_text_from_tokens_is_made_safe_for_headers_and_logs() -> None:
    assert printable('a "quoted" \\ line\nbreak é') == "a 'quoted' ? line?break ?"
    assert shown("x" * 500).endswith("...") and len(shown("x" * 500)) == 120
    assert shown(["aud"]) == "['aud']"
