"""Calls to the authorization server: one JSON GET or form POST, bounded in time and size.

Every failure (refused connection, no answer within ``within`` seconds, an error status, a body that is
not a JSON object) is one ``AuthServerUnavailable`` naming the URL and what happened. Redirects are
not followed for POSTs, which carry this server's client credentials.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from .errors import AuthServerUnavailable

MAX_BODY_BYTES = 1024 * 1024  # metadata, key sets and introspection answers are a few KB


async def get_json(url: str, within: float) -> dict[str, Any]:
    return await _request("GET", url, within)


async def post_form(url: str, form: Mapping[str, str], headers: Mapping[str, str], within: float) -> dict[str, Any]:
    return await _request("POST", url, within, form=form, headers=headers)


async def _request(
    method: str,
    url: str,
    within: float,
    *,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within)) as session,
            session.request(
                method,
                url,
                data=dict(form) if form is not None else None,
                headers={"Accept": "application/json", **(headers or {})},
                allow_redirects=method == "GET",
            ) as response,
        ):
            body = await response.content.read(MAX_BODY_BYTES + 1)
            status = response.status
    except TimeoutError:
        raise AuthServerUnavailable(f"{url} did not answer within {within:g} s") from None
    except aiohttp.ClientError as exc:
        raise AuthServerUnavailable(f"{url} could not be reached ({_describe(exc)})") from None
    if status != 200:
        raise AuthServerUnavailable(f"{url} answered HTTP {status}")
    if len(body) > MAX_BODY_BYTES:
        raise AuthServerUnavailable(f"{url} answered more than {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise AuthServerUnavailable(f"{url} did not answer a JSON object")
    return document


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error.strerror or type(exc.os_error).__name__
    return str(exc) or type(exc).__name__
