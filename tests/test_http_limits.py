"""One HTTP client cannot lock the others out: sessions per client, new sessions a minute, idle
sessions, slow headers and bodies, wrong tokens. Raw HTTP where the transport is what is tested,
the real mcp client otherwise; real server processes and a real etcd.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from mcp_helpers import HttpServer, call, http_client, http_server
from polling import eventually
from test_tokens_limits import MCP_HEADERS, Tokens, initialize, new_tokens, raw_post

pytestmark = pytest.mark.anyio

NO_RATE_LIMITS = {"http_rate_limit": "0", "http_sessions_per_minute": "0"}


def _open_session(url: str, token: str | None) -> httpx2.Response:
    return raw_post(url, token, initialize())


def _session_answers(url: str, token: str, session_id: str) -> int:
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    return raw_post(url, token, listing, **{"Mcp-Session-Id": session_id}).status_code


def _delete_session(url: str, token: str, session_id: str) -> int:
    headers = {"Authorization": f"Bearer {token}", "Mcp-Session-Id": session_id}
    with httpx2.Client(trust_env=False, timeout=30) as http:
        return http.delete(url, headers=headers).status_code


@contextmanager
def _limited_server(
    etcd_endpoint: str, tmp_path: Path, transport: str = "streamable-http", **settings: str
) -> Iterator[tuple[HttpServer, Tokens, Path]]:
    tokens, log = new_tokens(), tmp_path / "server.log"
    with (
        log.open("wb") as stderr,
        http_server(
            etcd_endpoint, transport, stderr=stderr, hub="false", http_tokens=tokens.settings(tmp_path), **settings
        ) as server,
    ):
        yield server, tokens, log


# Sessions ------------------------------------------------------------------------------------------


async def test_sessions_per_client_are_capped_per_token(etcd_endpoint: str, tmp_path: Path) -> None:
    with _limited_server(etcd_endpoint, tmp_path, http_max_sessions_per_client="2", **NO_RATE_LIMITS) as (
        server,
        tokens,
        _,
    ):
        opened = [_open_session(server.url, tokens.read) for _ in range(2)]
        assert [r.status_code for r in opened] == [200, 200]
        refused = _open_session(server.url, tokens.read)
        assert refused.status_code == 429
        body = refused.json()
        assert body["error"] == "too_many_sessions"
        assert (
            "token reader holds 2 open sessions" in body["message"]
            and "http_max_sessions_per_client" in body["message"]
        )
        assert "mcp-session-id" not in refused.headers
        # Another token is not held back by this one, and the open sessions still work.
        assert _open_session(server.url, tokens.write).status_code == 200
        first = opened[0].headers["mcp-session-id"]
        assert _session_answers(server.url, tokens.read, first) == 200
        # Ending one makes room for one.
        assert _delete_session(server.url, tokens.read, first) == 200
        assert _open_session(server.url, tokens.read).status_code == 200
        assert _open_session(server.url, tokens.read).status_code == 429


async def test_new_sessions_a_minute_are_limited(etcd_endpoint: str, tmp_path: Path) -> None:
    with _limited_server(etcd_endpoint, tmp_path, http_sessions_per_minute="3", http_rate_limit="0") as (
        server,
        tokens,
        _,
    ):
        assert [_open_session(server.url, tokens.admin).status_code for _ in range(3)] == [200, 200, 200]
        refused = _open_session(server.url, tokens.admin)
        assert refused.status_code == 429 and refused.json()["error"] == "too_many_new_sessions"
        assert 1 <= int(refused.headers["Retry-After"]) <= 20  # one comes back every 20 s
        assert "http_sessions_per_minute" in refused.json()["message"]
        assert _open_session(server.url, tokens.write).status_code == 200  # per token


async def test_an_idle_session_ends_and_frees_its_place(etcd_endpoint: str, tmp_path: Path) -> None:
    settings = {"http_max_sessions_per_client": "1", "http_session_idle_timeout": "5", **NO_RATE_LIMITS}
    with _limited_server(etcd_endpoint, tmp_path, **settings) as (server, tokens, _):
        opened = _open_session(server.url, tokens.read)
        assert opened.status_code == 200
        assert _open_session(server.url, tokens.read).status_code == 429
        # (Asking the session itself would keep it busy: ask for a new one until there is room.)
        await eventually(lambda: _open_session(server.url, tokens.read).status_code == 200, "the idle session ended")
        assert _session_answers(server.url, tokens.read, opened.headers["mcp-session-id"]) == 404


async def test_sse_connections_per_client_are_capped(etcd_endpoint: str, tmp_path: Path) -> None:
    with (
        _limited_server(etcd_endpoint, tmp_path, "sse", http_max_sessions_per_client="2", **NO_RATE_LIMITS) as (
            server,
            tokens,
            _,
        ),
        httpx2.Client(trust_env=False, timeout=30) as http,
        ExitStack() as streams,
    ):
        readers: list[Iterator[str]] = []

        def connect(token: str) -> httpx2.Response:
            headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {token}"}
            response = streams.enter_context(http.stream("GET", server.url, headers=headers))
            if response.status_code == 200:
                lines = response.iter_lines()
                assert next(lines) == "event: endpoint"  # the session is open
                readers.append(lines)  # (a line iterator closes its response when it is dropped)
            else:
                response.read()
            return response

        assert [connect(tokens.read).status_code for _ in range(2)] == [200, 200]
        refused = connect(tokens.read)
        assert refused.status_code == 429 and refused.json()["error"] == "too_many_sessions"
        assert connect(tokens.write).status_code == 200


async def test_listen_streams_count_as_sessions(etcd_endpoint: str, tmp_path: Path) -> None:
    """The stateless era's long-lived request, through the real client."""
    with _limited_server(etcd_endpoint, tmp_path, http_max_sessions_per_client="1", **NO_RATE_LIMITS) as (
        server,
        tokens,
        log,
    ):
        async with http_client(server.url, tokens.read) as reader, http_client(server.url, tokens.write) as writer:
            async with reader.listen(tools_list_changed=True):
                with pytest.raises(MCPError):  # the client's word for the 429
                    async with reader.listen(tools_list_changed=True):
                        pass
                assert "refused a new session of token reader: it holds 1 already" in log.read_text()
                async with writer.listen(tools_list_changed=True):
                    await call(reader, "kv_list", prefix="t/")  # ordinary calls are not sessions

            async def listens() -> bool:  # the server sees the closed stream go a moment later
                try:
                    async with reader.listen(tools_list_changed=True):
                        return True
                except MCPError:
                    return False

            await eventually(listens, "the closed stream freed its place")


# Slow clients --------------------------------------------------------------------------------------


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("sent", [b"", b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"], ids=["nothing", "half a head"])
async def test_a_request_head_that_does_not_arrive_is_refused(etcd_endpoint: str, tmp_path: Path, sent: bytes) -> None:
    with _limited_server(etcd_endpoint, tmp_path, http_header_timeout="1") as (server, _, _):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(sent)
            answer = _read_all(sock)  # the server closes the connection
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"http_header_timeout" in answer


async def test_a_trickled_head_is_refused(etcd_endpoint: str, tmp_path: Path) -> None:
    """A header line now and then (slowloris) does not keep the connection."""
    with _limited_server(etcd_endpoint, tmp_path, http_header_timeout="1") as (server, _, _):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"POST /mcp HTTP/1.1\r\n")
            closed = False
            for n in range(100):  # a header every 0.2 s: never complete, always something new
                try:
                    sock.sendall(f"X-Slow-{n}: 1\r\n".encode())
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                await anyio.sleep(0.2)
            answer = b"" if closed else _read_all(sock)
        assert closed or answer.startswith(b"HTTP/1.1 408 ")


async def test_a_body_that_does_not_arrive_is_refused(etcd_endpoint: str, tmp_path: Path) -> None:
    with _limited_server(etcd_endpoint, tmp_path, http_body_timeout="1") as (server, tokens, _):
        body = json.dumps(initialize()).encode()
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {tokens.read}\r\n"
            f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(head + body[:10])  # and the rest never comes
            answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"http_body_timeout" in answer and b'"request_timeout"' in answer
        # A whole request is still served.
        assert raw_post(server.url, tokens.read).status_code == 200


# Wrong tokens --------------------------------------------------------------------------------------


def _post_from(address: str, url: str, token: str) -> httpx2.Response:
    transport = httpx2.HTTPTransport(local_address=address)
    with httpx2.Client(trust_env=False, timeout=30, transport=transport) as http:
        body = json.dumps(initialize()).encode()
        return http.post(url, content=body, headers=MCP_HEADERS | {"Authorization": f"Bearer {token}"})


async def test_wrong_tokens_are_limited_per_address_and_logged_at_a_bounded_rate(
    etcd_endpoint: str, tmp_path: Path
) -> None:
    # Two wrong tokens a minute: the third comes back after 30 s, longer than this test takes.
    settings = {"http_auth_failures_per_minute": "2", "http_refusal_log_interval": "60", **NO_RATE_LIMITS}
    with _limited_server(etcd_endpoint, tmp_path, **settings) as (server, tokens, log):
        guesses = [_post_from("127.0.0.1", server.url, f"guess-{n}").status_code for n in range(20)]
        assert guesses == [403, 403] + [429] * 18
        # From that address even the right token waits now, before it is looked at...
        limited = _post_from("127.0.0.1", server.url, tokens.read)
        assert limited.status_code == 429 and limited.json()["error"] == "too_many_failed_authentications"
        assert int(limited.headers["Retry-After"]) >= 1 and "failed authentication" in limited.json()["message"]
        # ...while another address is not held back.
        assert _post_from("127.0.0.2", server.url, tokens.read).status_code == 200
        assert _post_from("127.0.0.2", server.url, "guess-x").status_code == 403
    logged = log.read_text()
    # 21 refusals, two lines: one per kind within the interval.
    assert logged.count("no valid bearer token") == 1, logged
    assert logged.count("too many bad tokens") == 1, logged
    assert "guess-" not in logged
