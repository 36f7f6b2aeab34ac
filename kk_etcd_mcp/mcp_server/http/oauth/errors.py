"""What can go wrong with an OAuth access token, and what the client is told::

    OAuthError
    ├── TokenRejected          the token is not good here: 401 invalid_token (the client gets a new one)
    └── AuthServerUnavailable  the authorization server could not be asked (keys, metadata,
                               introspection): 503, and the token is neither accepted nor blamed

Each message is a sentence about the token or the server, never the token itself.
"""


class OAuthError(Exception):
    pass


class TokenRejected(OAuthError):
    """The access token is invalid, expired, for another audience or issuer, or otherwise unusable here."""


class AuthServerUnavailable(OAuthError):
    """The authorization server did not answer usably: down, too slow, an error status, or not JSON."""


def printable(text: str) -> str:
    """``text`` fit for a log line or a quoted header parameter (RFC 6750: printable ASCII without '"' or '\\')."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "'" if c == '"' else "?" for c in text)


def shown(value: object, limit: int = 120) -> str:
    """A value from a token or an answer, safe to repeat in a message: its repr, printable, cut short."""
    text = printable(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
