"""Unary gRPC calls on our own HTTP/2 connection (``http2.py``), read on the event loop.

A ``UnaryChannel`` keeps one connection to the first of its addresses that accepts one, and opens it
again when it is gone (closed by the server, a GOAWAY, a broken protocol, a call that timed out while
nothing at all came back). Each call follows the gRPC over HTTP/2 protocol: POST with ``te: trailers``
(and ``grpc-timeout`` when it has a deadline), one length-prefixed message each way, the verdict in
``grpc-status`` (and ``grpc-message``) of the trailers or of a trailers-only answer, an HTTP status other
than 200 mapped as gRPC clients map it.

A request the server cannot have processed (REFUSED_STREAM, a GOAWAY before our stream, no connection
at all) is sent once more on a fresh connection, as gRPC's transparent retry does. So is, when the
caller says the request is ``idempotent``, one that a kept connection lost before any answer (a stale
connection the server had closed meanwhile): a write must not be sent twice on a guess.
"""

from __future__ import annotations

import asyncio
import errno
import math
import socket
import ssl
import struct
from collections.abc import Sequence
from urllib.parse import unquote

from .http2 import DEFAULT_WINDOW, Answer, Http2Connection, StreamError, header_block

# grpc.StatusCode's names by number (the gRPC wire protocol sends the number in grpc-status).
STATUS_CODE_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)  # fmt: skip
# How gRPC clients read an HTTP status other than 200 (gRPC's doc/http-grpc-status-mapping.md).
_HTTP_STATUS_CODES = {
    "400": "INTERNAL", "401": "UNAUTHENTICATED", "403": "PERMISSION_DENIED", "404": "UNIMPLEMENTED",
    "429": "UNAVAILABLE", "502": "UNAVAILABLE", "503": "UNAVAILABLE", "504": "UNAVAILABLE",
}  # fmt: skip
CHANNEL_CLOSED = "Channel is closed."
CLOSED_DURING_CALL = "cancelled (channel closed)"

Metadata = tuple[tuple[str, str], ...]


class CallError(Exception):
    """A call that got no answer message: ``code`` a gRPC status code's name (None when the channel itself
    was closed), ``details`` why; ``unprocessed``: the server cannot have acted on the request."""

    def __init__(self, code: str | None, details: str = "", *, unprocessed: bool = False) -> None:
        super().__init__(f"{code}: {details}" if code else details)
        self.code = code
        self.details = details
        self.unprocessed = unprocessed


def status_code_name(value: str) -> str:
    """The name of a grpc-status value ('14' -> 'UNAVAILABLE'); the number itself when unknown."""
    return STATUS_CODE_NAMES[int(value)] if value.isdigit() and int(value) < len(STATUS_CODE_NAMES) else value


def connect_reason(exc: OSError) -> str:
    """Why a connection failed, in a few words: 'connection refused', a certificate's fault, the system's."""
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, ConnectionResetError) or exc.errno == errno.ECONNRESET:
        return "connection reset by peer"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(getattr(exc, "verify_message", None) or exc.reason)
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host: {exc.strerror or exc}"
    return exc.strerror or str(exc) or type(exc).__name__


class UnaryChannel:
    """Unary calls to the first of ``addresses`` (host, port) that accepts a connection; TLS when ``tls``
    is given, verified for ``server_name`` (else the host). ``max_answer`` bounds an answer's size,
    ``window`` how much of it the server may send ahead of our reading."""

    def __init__(
        self,
        addresses: Sequence[tuple[str, int]],
        *,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
        max_answer: int,
        window: int = DEFAULT_WINDOW,
        user_agent: str,
    ) -> None:
        self.addresses = list(addresses)
        self.tls = tls
        self._server_name = server_name
        self._max_answer = max_answer
        self._window = window
        self._user_agent = user_agent
        self._current = 0  # the address connected to last
        self._blocks: dict[tuple[str, float | None, Metadata, int], bytes] = {}  # encoded request headers
        self._connection: Http2Connection | None = None
        self._connecting = asyncio.Lock()
        self._closed = False

    @property
    def address(self) -> tuple[str, int]:
        """The address calls go to now (or will, once connected)."""
        return self.addresses[self._current]

    async def call(
        self,
        path: str,
        message: bytes,
        *,
        within: float | None = None,
        metadata: Metadata = (),
        idempotent: bool = True,
    ) -> bytes:
        """The answer message of ``path`` (``/package.Service/Method``) for the serialized ``message``;
        ``within`` seconds in all (None: no deadline). CallError for any other outcome."""
        if self._closed:
            raise CallError(None, CHANNEL_CLOSED)
        body = b"\x00" + struct.pack(">I", len(message)) + message
        block = self._block(path, within, metadata)
        if within is None:
            return await self._call(body, block, idempotent)
        try:
            async with asyncio.timeout(within):
                return await self._call(body, block, idempotent)
        except TimeoutError:
            raise CallError("DEADLINE_EXCEEDED") from None

    def failover(self) -> None:
        """Send the next call to the next address (when there is one): this one answered it cannot serve."""
        if len(self.addresses) > 1:
            self._current = (self._current + 1) % len(self.addresses)
            self._drop("moving to another endpoint")

    async def close(self) -> None:
        """Close the connection; a call in flight ends as cancelled, later ones as closed."""
        self._closed = True
        self._drop(CLOSED_DURING_CALL)

    def _drop(self, reason: str) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close(reason)

    async def _call(self, body: bytes, block: bytes, idempotent: bool) -> bytes:
        for attempt in (1, 2):
            connection, reused = await self._connect()
            received = connection.bytes_received
            stream_id, answer = connection.request(block, body)
            try:
                return _message(await answer)
            except StreamError as exc:
                if self._closed:
                    raise CallError(None, CLOSED_DURING_CALL) from None
                unsent = exc.unprocessed or (idempotent and reused and exc.unanswered)
                if attempt == 1 and unsent:
                    continue  # the server never saw it (or, for a read, a kept connection it had just closed)
                raise CallError("UNAVAILABLE", exc.reason, unprocessed=exc.unprocessed) from None
            finally:
                if answer.cancelled():  # timed out or cancelled (which cancels the future): tell the server to stop
                    connection.cancel(stream_id)
                    if connection.bytes_received == received and connection is self._connection:
                        self._drop("no answer on this connection")  # silent: perhaps dead without a word
        raise AssertionError("unreachable")

    async def _connect(self) -> tuple[Http2Connection, bool]:
        """The open connection (and True), or a new one (and False)."""
        current = self._connection
        if current is not None and current.usable:  # nearly always: no lock to take
            return current, True
        async with self._connecting:
            current = self._connection
            if current is not None and current.usable:
                return current, True
            if current is not None and not current.open_streams:
                current.close("replaced by a new connection")
            failure: OSError | None = None
            for step in range(len(self.addresses)):
                index = (self._current + step) % len(self.addresses)
                try:
                    connection = await self._open(*self.addresses[index])
                except OSError as exc:  # ssl.SSLError is one too: an untrusted certificate, a failed handshake
                    failure = exc
                    continue
                self._current = index
                if self._closed:
                    connection.close(CHANNEL_CLOSED)
                    raise CallError(None, CHANNEL_CLOSED)
                if self.tls is not None and _negotiated(connection) != "h2":
                    connection.close("no HTTP/2")
                    raise CallError("UNAVAILABLE", "the server did not negotiate HTTP/2 over TLS (ALPN h2)")
                self._connection = connection
                return connection, False
            assert failure is not None
            reason = connect_reason(failure)
            if isinstance(failure, ssl.SSLError):
                reason = f"TLS handshake failed: {reason}"
            raise CallError("UNAVAILABLE", reason, unprocessed=True)

    async def _open(self, host: str, port: int) -> Http2Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: Http2Connection(max_body=self._max_answer, window=self._window),
            host,
            port,
            ssl=self.tls,
            server_hostname=(self._server_name or host) if self.tls else None,
        )
        return connection

    def _block(self, path: str, timeout: float | None, metadata: Metadata) -> bytes:
        key = (path, timeout, metadata, self._current)
        block = self._blocks.get(key)
        if block is None:
            if len(self._blocks) > 16:  # timeouts or tokens changed again and again: keep the map small
                self._blocks.clear()
            host, port = self.address
            authority = self._server_name or (f"[{host}]" if ":" in host else host)
            headers = [
                (":method", "POST"), (":scheme", "https" if self.tls else "http"), (":path", path),
                (":authority", f"{authority}:{port}"), ("content-type", "application/grpc"), ("te", "trailers"),
                ("user-agent", self._user_agent),
            ]  # fmt: skip
            if timeout is not None:
                headers.append(("grpc-timeout", f"{max(1, math.ceil(timeout * 1000))}m"))  # milliseconds
            block = self._blocks[key] = header_block([*headers, *metadata])
        return block


def _negotiated(connection: Http2Connection) -> str | None:
    ssl_object = connection.transport.get_extra_info("ssl_object") if connection.transport else None
    return ssl_object.selected_alpn_protocol() if ssl_object is not None else None


def _message(answer: Answer) -> bytes:
    """The message in a complete answer; CallError for any other outcome."""
    http_status = answer.headers.get(":status", "")
    if http_status != "200":
        code = _HTTP_STATUS_CODES.get(http_status, "UNKNOWN")
        raise CallError(code, f"the server answered HTTP status {http_status or 'nothing'}")
    content_type = answer.headers.get("content-type", "")
    if not content_type.startswith("application/grpc"):
        raise CallError("UNKNOWN", f"the answer is not gRPC (content-type {content_type!r})")
    trailers = answer.trailers or answer.headers  # a trailers-only answer: one header block
    status = trailers.get("grpc-status")
    if status is None:
        raise CallError("INTERNAL", "the answer ended without a grpc-status")
    if status != "0":
        raise CallError(status_code_name(status), unquote(trailers.get("grpc-message", "")))
    body = answer.body
    if len(body) < 5 or len(body) != 5 + int.from_bytes(body[1:5], "big"):
        raise CallError("INTERNAL", "the answer is not one length-prefixed message")
    if body[0]:
        raise CallError("INTERNAL", "the answer is compressed, though the request offered no compression")
    return bytes(body[5:])
