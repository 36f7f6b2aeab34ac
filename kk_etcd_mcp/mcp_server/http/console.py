"""The web console at ``/ui/``: the built files of ``kk_etcd_mcp/ui/``, served beside the MCP endpoint.

The console is an MCP client of ``/mcp`` like any other, so this module serves only files: the same
bytes for everyone, holding no secret. They are served without a bearer token (a browser sends none
when it opens a page); every request the page then makes to ``/mcp`` carries the token the person
signed in with and passes the usual checks, limits, confirmations and audit trail. There is no other
route: no second API with rules of its own.

What is answered: ``GET``/``HEAD`` of ``/ui/`` (the page) and of the files the package ships (read once,
at start); ``/ui`` and ``/`` redirect to ``/ui/``; anything else under ``/ui/`` is 404, other methods 405.
The Host header is checked as for MCP requests (DNS rebinding). Every answer carries a strict
Content-Security-Policy (scripts and styles only from the server itself, no inline script, no eval,
``connect-src 'self'``), ``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ... import ui

UI_PATH = "/ui"
INDEX = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets(directory: Path | None = None, *, token_required: bool = False) -> dict[str, Asset]:
    """The console's files by name (``index.html``, ``console.js``, ...): the served kinds, nothing else.

    ``token_required``: the page is marked so (``<html data-sign-in="token">``) and asks for a token
    before its first request, instead of learning it from a refused one (which browsers log as an error).
    """
    directory = directory or ui.ASSETS
    assets: dict[str, Asset] = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        if path.name == INDEX and token_required:
            body = body.replace(b"<html ", b'<html data-sign-in="token" ', 1)
        assets[path.name] = Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return assets


class WithConsole:
    """``/ui/`` (and ``/``) answered here; every other request passed to ``app`` (the MCP endpoints)."""

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings, *, token_required: bool) -> None:
        self.app = app
        self.assets = load_assets(token_required=token_required)
        self._hosts = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/" or path == UI_PATH or path.startswith(UI_PATH + "/"):
            await self._serve(scope, receive, send, path)
        else:
            await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        refused = await self._hosts.validate_request(Request(scope, receive), is_post=False)
        if refused is not None:  # a Host (or Origin) this server does not answer to: DNS rebinding
            await refused(scope, receive, _with_security_headers(send))
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, _message("method_not_allowed", "the console's files are read with GET"))
            return
        if path in ("/", UI_PATH):
            await _answer(send, 308, b"", {"location": UI_PATH + "/"})
            return
        name = path.removeprefix(UI_PATH + "/") or INDEX
        asset = self.assets.get(name)
        if asset is None:
            await _answer(send, 404, _message("not_found", f"the console has no file {name!r}; open {UI_PATH}/"))
            return
        headers = {"content-type": asset.content_type, "etag": asset.etag, "cache-control": "no-cache"}
        if Headers(scope=scope).get("if-none-match") == asset.etag:
            await _answer(send, 304, b"", headers, head=True)
            return
        await _answer(send, 200, asset.body, headers, head=method == "HEAD")


def _with_security_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            given = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in SECURITY_HEADERS]
            ours = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
            message = {**message, "headers": given + ours}
        await send(message)

    return sending


def _message(error: str, message: str) -> bytes:
    return json.dumps({"error": error, "message": message}).encode()


async def _answer(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None, head: bool = False
) -> None:
    fields = {"content-type": "application/json", **(headers or {}), **SECURITY_HEADERS}
    if status != 304:
        fields["content-length"] = str(len(body))
    raw = [(name.encode(), value.encode()) for name, value in fields.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if head else body})
