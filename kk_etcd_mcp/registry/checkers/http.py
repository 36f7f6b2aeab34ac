"""HTTP probe: GET the check URL; 2xx passing, 429 warning, anything else critical (Consul's rules).

Redirects are not followed: a 3xx is critical and its output names the target. The hub checks the URL
that was registered, not whatever a target points it to (a registry that fetches arbitrary URLs on a
target's say-so is a request-forgery relay), and a health endpoint that redirects is misconfigured.

The whole request (connect, TLS, headers, the body read) is bounded by ``spec.timeout``. At most
``OUTPUT_LIMIT`` bytes of the body are read; a body left unread closes the connection instead of
returning it to the keep-alive pool, so a huge or endless body costs 4 KB and one connection.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from http import HTTPStatus

import aiohttp
import anyio

from ..model import CheckSpec, Status
from .result import OUTPUT_LIMIT, CheckResult, cap_output, decode_head, error_reason, one_line, os_error_reason


async def tls_context(ca_file: str) -> ssl.SSLContext:
    """A client context that trusts only ``ca_file``, loaded in a worker thread (off the event loop);
    OSError or ssl.SSLError when it cannot be loaded."""
    return await anyio.to_thread.run_sync(lambda: ssl.create_default_context(cafile=ca_file))


async def probe_http(
    spec: CheckSpec, session: aiohttp.ClientSession, *, ssl_context: ssl.SSLContext | None = None
) -> CheckResult:
    """GET ``spec.addr``; ``ssl_context`` (for ``spec.ca_file``) is built here when not given."""
    start = time.perf_counter()
    label = f"HTTP GET {spec.addr}"

    def result(status: Status, output: str) -> CheckResult:
        return CheckResult(status, output, time.perf_counter() - start)

    if spec.tls and not spec.addr.lower().startswith("https://"):
        return result("critical", f"{label}: TLS is on but the check URL is not https://")
    verify: ssl.SSLContext | bool = True  # True: aiohttp's default context, verified by the system CAs
    if spec.ca_file is not None:
        try:
            verify = ssl_context or await tls_context(spec.ca_file)
        except (OSError, ssl.SSLError) as exc:
            return result("critical", f"{label}: cannot load CA file {spec.ca_file}: {error_reason(exc)}")
    try:
        async with asyncio.timeout(spec.timeout):
            async with session.get(spec.addr, ssl=verify, allow_redirects=False) as resp:
                body = await _read_head(resp.content, OUTPUT_LIMIT)
                if not resp.content.at_eof():
                    resp.close()  # the rest is unread: this connection cannot serve another request
                code, reason = resp.status, resp.reason or _phrase(resp.status)
                location = resp.headers.get("Location")
    except TimeoutError:
        return result("critical", f"{label}: timed out after {spec.timeout:g}s")
    except (aiohttp.ClientError, OSError) as exc:
        return result("critical", f"{label}: {describe_error(exc)}")

    line = f"{label}: {code} {reason}"
    if 300 <= code < 400 and location:
        line += f" (redirect to {one_line(location)} not followed)"
    text = cap_output(decode_head(body))
    return result(_status(code), f"{line} Output: {text}" if text else line)


def _status(code: int) -> Status:
    if 200 <= code < 300:
        return "passing"
    if code == HTTPStatus.TOO_MANY_REQUESTS:
        return "warning"
    return "critical"


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


async def _read_head(content: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to ``limit`` bytes from the start of the body; ``read(n)`` alone may return fewer."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def describe_error(exc: BaseException) -> str:
    """A short reason for a failed request, without aiohttp's connection-key noise."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not trusted: {error_reason(exc.certificate_error)}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return f"TLS handshake failed: {error_reason(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return os_error_reason(exc.os_error)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without a response"
    if isinstance(exc, aiohttp.ClientResponseError):
        # The parser's message spans lines and ends with a caret under the bad byte.
        return f"invalid response: {one_line(exc.message).removesuffix(' ^')}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"invalid response body: {error_reason(exc)}"
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return "not an http:// or https:// URL"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    if isinstance(exc, OSError):
        return os_error_reason(exc)
    return f"{type(exc).__name__}: {error_reason(exc)}"
