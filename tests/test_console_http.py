"""Serving the web console over HTTP (no browser): what /ui/ answers and with which headers, the setting
``ui``, /mcp beside /sse for the console, and the kk://client resource that tells a client who it is.
Against real ``kk-etcd-mcp serve`` processes; requests sent raw with httpx2.
"""

from __future__ import annotations

import json

import httpx2
import pytest
from mcp_helpers import http_client, http_server, sse_session, stdio_client

pytestmark = pytest.mark.anyio

TOKEN = "console-http-token-0123456789"
READER = "console-http-read-0123456789"


def raw(port: int, method: str, path: str, **kwargs: object) -> httpx2.Response:
    with httpx2.Client(trust_env=False, timeout=10, follow_redirects=False) as http:
        return http.request(method, f"http://127.0.0.1:{port}{path}", **kwargs)  # type: ignore[arg-type]


def assert_strict_headers(response: httpx2.Response) -> None:
    policy = response.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'"):
        assert directive in policy, policy
    assert "frame-ancestors 'none'" in policy and "unsafe" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_console_is_served_without_a_token_and_mcp_still_wants_one(etcd_endpoint: str) -> None:
    tokens = json.dumps([{"name": "ops", "scope": "admin", "token": TOKEN}])
    with http_server(etcd_endpoint, "streamable-http", http_tokens=tokens, hub="false") as server:
        page = raw(server.port, "GET", "/ui/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert_strict_headers(page)
        assert '<html data-sign-in="token" lang="en">' in page.text  # the page asks for a token first
        assert '<script type="module" src="console.js"></script>' in page.text

        script = raw(server.port, "GET", "/ui/console.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert_strict_headers(script)
        again = raw(server.port, "GET", "/ui/console.js", headers={"If-None-Match": script.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        head = raw(server.port, "HEAD", "/ui/console.css")
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 1000

        for path in ("/", "/ui"):
            moved = raw(server.port, "GET", path)
            assert (moved.status_code, moved.headers["location"]) == (308, "/ui/"), path
        missing = raw(server.port, "GET", "/ui/__init__.py")  # only the console's files, nothing else of the package
        assert missing.status_code == 404 and "no file '__init__.py'" in missing.json()["message"]
        assert_strict_headers(missing)
        assert raw(server.port, "POST", "/ui/", content=b"{}").status_code == 405

        rebinding = raw(server.port, "GET", "/ui/", headers={"Host": "evil.example:2445"})
        assert rebinding.status_code == 421  # DNS rebinding: refused as for MCP requests
        assert_strict_headers(rebinding)

        refused = raw(server.port, "POST", "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 403  # the console's files need no token; MCP requests do


async def test_ui_false_serves_no_console(etcd_endpoint: str) -> None:
    with http_server(etcd_endpoint, "streamable-http", ui="false", hub="false") as server:
        assert raw(server.port, "GET", "/ui/").status_code == 404
        assert raw(server.port, "GET", "/").status_code == 404
        async with http_client(server.url) as client:  # MCP is as before
            assert (await client.read_resource("kk://client")).contents


async def test_sse_serves_streamable_http_beside_it_for_the_console(etcd_endpoint: str) -> None:
    with http_server(etcd_endpoint, "sse", hub="false") as server:
        assert raw(server.port, "GET", "/ui/").status_code == 200
        async with sse_session(server.url) as over_sse:
            assert who(await over_sse.read_resource("kk://client"))["name"] == "http"
        async with http_client(f"http://127.0.0.1:{server.port}/mcp") as over_streamable:
            assert who(await over_streamable.read_resource("kk://client"))["name"] == "http"
    with http_server(etcd_endpoint, "sse", ui="false", hub="false") as server:
        assert raw(server.port, "GET", "/ui/").status_code == 404
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        assert raw(server.port, "POST", "/mcp", json=ping).status_code == 404


async def test_kk_client_names_the_caller_and_its_scope(etcd_endpoint: str) -> None:
    tokens = json.dumps(
        [{"name": "ops", "scope": "admin", "token": TOKEN}, {"name": "viewer", "scope": "read", "token": READER}]
    )
    with http_server(etcd_endpoint, "streamable-http", http_tokens=tokens, read_only="true", hub="false") as server:
        async with http_client(server.url, TOKEN) as client:
            assert who(await client.read_resource("kk://client")) == {
                "name": "ops",
                "scope": "admin",
                "read_only": True,
            }
        async with http_client(server.url, READER) as client:
            listed = {str(r.uri) for r in (await client.list_resources()).resources}
            assert "kk://client" in listed
            assert who(await client.read_resource("kk://client")) == {
                "name": "viewer",
                "scope": "read",
                "read_only": True,
            }
    async with stdio_client(etcd_endpoint, hub="false") as client:
        assert who(await client.read_resource("kk://client")) == {"name": "stdio", "scope": "admin", "read_only": False}


def who(read: object) -> dict[str, object]:
    contents = read.contents  # type: ignore[attr-defined]
    assert contents[0].mime_type == "application/json"
    return json.loads(contents[0].text)  # type: ignore[no-any-return]
