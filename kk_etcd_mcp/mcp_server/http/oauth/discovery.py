"""The authorization server's metadata (RFC 8414, or OpenID Connect Discovery): where its keys are.

The well-known URLs are tried in the order the MCP authorization spec gives (mcp's own helper builds
them): OAuth's first, then OpenID Connect's. The first document found must name exactly the
configured issuer (RFC 8414 §3.3), or nothing from it is used.
"""

from __future__ import annotations

from mcp.client.auth.utils import build_oauth_authorization_server_metadata_discovery_urls
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import AuthServerUnavailable
from .fetch import get_json


class IssuerMetadata(BaseModel):
    """The fields used here; the rest of the document is ignored."""

    model_config = ConfigDict(extra="ignore")

    issuer: str
    jwks_uri: str | None = None


async def discover(issuer: str, within: float) -> IssuerMetadata:
    """The issuer's metadata; AuthServerUnavailable when none of its well-known URLs answers with it."""
    tried: list[str] = []
    for url in build_oauth_authorization_server_metadata_discovery_urls(issuer, issuer):
        try:
            document = await get_json(url, within)
        except AuthServerUnavailable as exc:
            tried.append(str(exc))
            continue
        try:
            metadata = IssuerMetadata.model_validate(document)
        except ValidationError:
            tried.append(f"{url} is not authorization server metadata")
            continue
        if metadata.issuer != issuer:
            raise AuthServerUnavailable(
                f"the metadata at {url} names the issuer {metadata.issuer!r}, not {issuer!r}; set oauth_issuer to "
                "exactly the issuer its tokens carry"
            )
        return metadata
    raise AuthServerUnavailable(f"no metadata found for the issuer {issuer}: {'; '.join(tried)}")
