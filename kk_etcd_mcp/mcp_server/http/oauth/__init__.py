"""OAuth 2.1 resource server, as the MCP authorization spec has it: access tokens from the
organisation's authorization server are accepted beside the static ``http_tokens``.

- ``resource.py``: the resource URL, audience and scope names; a token to a client identity;
  the ``WWW-Authenticate`` challenge.
- ``metadata.py``: Protected Resource Metadata (RFC 9728), served without a token.
- ``verifier.py``: the check (an mcp ``TokenVerifier``): JWTs locally (``jwt_access.py``, with the
  issuer's keys from ``keys.py``, located by ``discovery.py``), other tokens by introspection
  (``introspection.py``). ``fetch.py`` is the one way out to the authorization server.
- ``errors.py``: a refused token (401) versus an authorization server that cannot be asked (503).

No token is ever passed on to etcd, logged, or kept: only its claims, and a digest to reuse an
introspection answer for a short while.
"""

from .errors import AuthServerUnavailable, OAuthError, TokenRejected
from .metadata import ProtectedResourceMetadataRoutes
from .resource import OAuthResource, ScopeNames
from .verifier import OAuthVerifier

__all__ = [
    "AuthServerUnavailable",
    "OAuthError",
    "OAuthResource",
    "OAuthVerifier",
    "ProtectedResourceMetadataRoutes",
    "ScopeNames",
    "TokenRejected",
]
