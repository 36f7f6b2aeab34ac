"""A small HTTP/2 client connection (RFC 9113) for unary gRPC calls: the hub's health checks and etcd's
KV requests (``unary.py`` drives it).

grpc.aio spends about 350 us of CPU per call here, more than half a core for 10,000 instances checked
every 5 s; the ``h2`` library's general state machine about 280 us. And grpc.aio reads its answers on a
poller thread of its own, which then wakes the event loop: two idle threads woken per etcd request. A
unary call is one request and one answer on a kept connection, so this client does only what that
needs, read on the event loop, at about a third of grpc.aio's cost (``bench/grpc_probes.py``):

* requests: a header block encoded once by the caller (``hpack``, literals never indexed, so every
  request reuses the same bytes) and a body, sent within the peer's flow-control windows;
* answers: every header block decoded with ``hpack`` (the peer's dynamic table must stay in step, even
  for streams we gave up on), DATA collected up to ``max_body`` bytes per stream;
* the connection's upkeep: SETTINGS and PING acknowledged, WINDOW_UPDATE sent as answers arrive,
  GOAWAY and RST_STREAM ended the way RFC 9113 says, any protocol error ends the connection.

No server push (disabled in our SETTINGS), priorities or padding beyond skipping them. ``Http2Connection``
is an asyncio protocol; ``request`` returns a future of the ``Answer``. A failed stream's future gets a
``StreamError`` that says whether the server cannot have seen the request (``unprocessed``: safe to send
again) or may have (``unanswered``: the connection was lost before any answer).
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from dataclasses import dataclass, field
from typing import Any

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = (
    0x0, 0x1, 0x3, 0x6, 0x7, 0x8, 0x9
)  # fmt: skip
SETTINGS_HEADER_TABLE_SIZE, SETTINGS_ENABLE_PUSH, SETTINGS_INITIAL_WINDOW_SIZE = 0x1, 0x2, 0x4
SETTINGS_MAX_FRAME_SIZE, SETTINGS_MAX_HEADER_LIST_SIZE = 0x5, 0x6

DEFAULT_WINDOW = 65_535
MAX_FRAME_SIZE = 16_384  # ours: we never raise it, so no peer may send larger frames
MAX_HEADER_LIST = 16_384  # a health answer's headers are a few hundred bytes
MAX_STREAM_ID = 2**31 - 1


class StreamError(Exception):
    """A request that got no complete answer; ``unprocessed``: the server cannot have acted on it."""

    def __init__(self, reason: str, *, unprocessed: bool = False, unanswered: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unprocessed = unprocessed  # REFUSED_STREAM, or a GOAWAY below its id: the server says it did not
        self.unanswered = unanswered  # the connection was lost before any answer: a stale kept connection?


class ConnectionFailed(Exception):
    """The connection broke the protocol, or the peer did; every open stream ends with its reason."""


@dataclass(slots=True)
class Answer:
    """A stream's answer: the response header block, the body and the trailer block (empty when the
    response had none: a gRPC "trailers-only" answer carries everything in ``headers``)."""

    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    trailers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Stream:
    done: asyncio.Future[Answer]
    answer: Answer = field(default_factory=Answer)
    pending: bytes = b""  # request body not yet sent: the peer's window was too small
    answered: bool = False  # a header block arrived: the server has seen the request


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream_id) + payload


def header_block(headers: list[tuple[str, str]]) -> bytes:
    """``headers`` as one HPACK block that touches no dynamic table: the same bytes serve every request."""
    never_indexed = [hpack.NeverIndexedHeaderTuple(name, value) for name, value in headers]
    return bytes(hpack.Encoder().encode(never_indexed, huffman=False))


class Http2Connection(asyncio.Protocol):
    """One client connection. ``window``: how many answer bytes the server may send ahead of our reading,
    per stream and in all (a health answer needs the default; etcd's pages of values, more)."""

    def __init__(self, *, max_body: int, window: int = DEFAULT_WINDOW) -> None:
        self.max_body = max_body
        self.window = window
        self.bytes_received = 0  # a caller whose answer is late asks whether anything came at all
        self.transport: asyncio.Transport | None = None
        self.closed_reason: str | None = None  # set once no new stream may start
        self.last_stream_id = MAX_STREAM_ID  # the highest the server may still answer (GOAWAY lowers it)
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = MAX_HEADER_LIST
        self._decoded: dict[bytes, dict[str, str]] = {}  # see _decode
        self._buffer = bytearray()
        self._streams: dict[int, _Stream] = {}
        self._next_stream_id = 1
        self._block: tuple[int, int, bytearray] | None = None  # a header block awaiting CONTINUATION
        self._send_window = DEFAULT_WINDOW  # the connection's; each stream's starts at the peer's setting
        self._stream_windows: dict[int, int] = {}
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = MAX_FRAME_SIZE
        self._unacknowledged = 0
        self._settled = False  # the server's first SETTINGS arrived

    @property
    def usable(self) -> bool:
        return self.closed_reason is None and self._next_stream_id <= MAX_STREAM_ID

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        settings = struct.pack(
            ">HIHIHI", SETTINGS_ENABLE_PUSH, 0, SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST,
            SETTINGS_INITIAL_WINDOW_SIZE, self.window,
        )  # fmt: skip
        opening = PREFACE + frame(SETTINGS, 0, 0, settings)
        if self.window > DEFAULT_WINDOW:  # the connection's window starts at the default whatever SETTINGS say
            opening += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.window - DEFAULT_WINDOW))
        transport.write(opening)

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        self._buffer += data
        try:
            if not self._settled and self._buffer.startswith(b"HTTP/"):
                raise ConnectionFailed("the server answered in HTTP/1, not HTTP/2: is it a gRPC server?")
            while len(self._buffer) >= 9:
                length = int.from_bytes(self._buffer[:3], "big")
                if length > MAX_FRAME_SIZE:
                    raise ConnectionFailed(f"the server sent a {length}-byte frame (FRAME_SIZE_ERROR)")
                if len(self._buffer) < 9 + length:
                    return
                kind, flags = self._buffer[3], self._buffer[4]
                if not self._settled and kind != SETTINGS:
                    raise ConnectionFailed("the server did not start with SETTINGS")
                stream_id = int.from_bytes(self._buffer[5:9], "big") & MAX_STREAM_ID
                payload = bytes(self._buffer[9 : 9 + length])
                del self._buffer[: 9 + length]
                self._on_frame(kind, flags, stream_id, payload)
        except ConnectionFailed as exc:
            self._fail_connection(f"HTTP/2 protocol error: {exc}", PROTOCOL_ERROR)
        except hpack.HPACKError as exc:
            self._fail_connection(f"HTTP/2 header compression error: {exc}", COMPRESSION_ERROR)

    def connection_lost(self, exc: Exception | None) -> None:
        lost = f"connection lost: {_lost_reason(exc)}"
        reason = self.closed_reason or (lost if exc else "connection closed by the server")
        self.closed_reason = reason
        for stream_id in list(self._streams):
            # Nothing came back on the stream: the server may not have read it (a stale kept connection).
            self._end(stream_id, StreamError(reason, unanswered=not self._streams[stream_id].answered))

    # --- requests ---------------------------------------------------------------------------

    def request(self, block: bytes, body: bytes) -> tuple[int, asyncio.Future[Answer]]:
        """Send a request (``block``: an encoded header block) and its body; the stream id and a future of
        its answer. Call only while ``usable``."""
        assert self.transport is not None and self.usable
        stream_id, self._next_stream_id = self._next_stream_id, self._next_stream_id + 2
        stream = _Stream(asyncio.get_running_loop().create_future(), pending=body)
        self._streams[stream_id] = stream
        self._stream_windows[stream_id] = self._peer_initial_window
        out = [frame(HEADERS, END_HEADERS, stream_id, block)] if len(block) <= self._peer_max_frame else []
        if not out:  # a long block: HEADERS, then CONTINUATION frames
            chunks = [block[i : i + self._peer_max_frame] for i in range(0, len(block), self._peer_max_frame)]
            out = [frame(HEADERS, 0, stream_id, chunks[0])]
            out += [frame(CONTINUATION, END_HEADERS if c is chunks[-1] else 0, stream_id, c) for c in chunks[1:]]
        self.transport.write(b"".join(out + self._body_frames(stream_id, stream)))
        return stream_id, stream.done

    def cancel(self, stream_id: int) -> None:
        """Give up on a stream: RST_STREAM CANCEL, so the server stops working on it."""
        if self._streams.pop(stream_id, None) is None:
            return
        self._stream_windows.pop(stream_id, None)
        self._write(frame(RST_STREAM, 0, stream_id, struct.pack(">I", CANCEL)))
        self._close_if_drained()

    def close(self, reason: str) -> None:
        """End every stream with ``reason`` and close politely (GOAWAY, then the transport)."""
        self._fail_connection(reason, NO_ERROR, unprocessed=False)

    def _body_frames(self, stream_id: int, stream: _Stream) -> list[bytes]:
        """DATA frames for as much of the stream's pending body as the windows allow (END_STREAM on the last)."""
        out: list[bytes] = []
        while stream.pending or not out:
            size = min(len(stream.pending), self._peer_max_frame, self._send_window, self._stream_windows[stream_id])
            if size == 0 and stream.pending:
                break  # wait for WINDOW_UPDATE
            chunk, stream.pending = stream.pending[:size], stream.pending[size:]
            self._send_window -= size
            self._stream_windows[stream_id] -= size
            out.append(frame(DATA, 0 if stream.pending else END_STREAM, stream_id, chunk))
            if not stream.pending:
                break
        return out

    # --- frames -----------------------------------------------------------------------------

    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._block is not None and kind != CONTINUATION:
            raise ConnectionFailed("a header block was interrupted by another frame")
        if kind == DATA:
            self._on_data(flags, stream_id, payload)
        elif kind == HEADERS:
            payload = _unpadded(flags, payload)
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            self._block = (stream_id, flags, bytearray(payload))
            if flags & END_HEADERS:
                self._on_header_block()
        elif kind == CONTINUATION:
            if self._block is None or self._block[0] != stream_id:
                raise ConnectionFailed("CONTINUATION without a header block")
            self._block[2].extend(payload)
            if len(self._block[2]) > 4 * MAX_HEADER_LIST:
                raise ConnectionFailed("a header block is too large")
            if flags & END_HEADERS:
                self._on_header_block()
        elif kind == RST_STREAM:
            code = int.from_bytes(payload[:4], "big") if len(payload) == 4 else PROTOCOL_ERROR
            self._end(stream_id, StreamError(_reset_reason(code), unprocessed=code == REFUSED_STREAM))
        elif kind == SETTINGS:
            self._on_settings(flags, payload)
        elif kind == PING and not flags & ACK:
            self._write(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            self._on_goaway(payload)
        elif kind == WINDOW_UPDATE:
            self._on_window_update(stream_id, payload)
        elif kind == PUSH_PROMISE:
            raise ConnectionFailed("the server pushed a stream, which our SETTINGS disabled")
        # PRIORITY and unknown frame types are ignored, as RFC 9113 asks

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        self._unacknowledged += len(payload)
        if self._unacknowledged >= self.window // 2:  # keep the connection's window open
            self._write(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self._unacknowledged)))
            self._unacknowledged = 0
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # a stream we cancelled: its bytes still counted against the window above
        stream.answer.body += _unpadded(flags, payload)
        if len(stream.answer.body) > self.max_body:
            self.cancel(stream_id)
            stream.done.set_exception(StreamError(f"the answer is longer than {self.max_body} bytes"))
        elif flags & END_STREAM:
            self._end(stream_id, None)
        elif len(stream.answer.body) > self.window // 2:  # never reached by a health answer
            self._write(frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", len(payload))))

    def _on_header_block(self) -> None:
        assert self._block is not None
        stream_id, flags, block = self._block
        self._block = None
        headers = self._decode(bytes(block))  # even for a stream we gave up on: see _decode
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if not stream.answered:
            stream.answered = True
            stream.answer.headers = headers
        else:
            stream.answer.trailers = headers
        if flags & END_STREAM:
            self._end(stream_id, None)

    def _decode(self, block: bytes) -> dict[str, str]:
        """The headers of ``block``. Every block is decoded, so that our copy of HPACK's dynamic table follows
        the server's. A server answers every check alike: once its headers are in the table, its blocks
        repeat byte for byte and leave the table as it was. Such a block's headers are kept and reused (a
        dictionary lookup instead of a decoding) until a block changes the table."""
        known = self._decoded.get(block)
        if known is not None:
            return known
        before = self._table_state()
        headers = {str(name): str(value) for name, value in self._decoder.decode(block, raw=False)}
        if self._table_state() != before:
            self._decoded.clear()  # what the kept blocks' indexes point at may have moved
        elif len(self._decoded) < 64:
            self._decoded[block] = headers
        return headers

    def _table_state(self) -> tuple[int, int, int]:
        # A new entry goes first (RFC 7541 2.3.3) and evictions or a size update change the count or size.
        table = self._decoder.header_table
        first = id(table.dynamic_entries[0]) if table.dynamic_entries else 0  # still held: an id not reused
        return len(table.dynamic_entries), first, table.maxsize

    def _on_settings(self, flags: int, payload: bytes) -> None:
        if flags & ACK:
            return
        self._settled = True
        if len(payload) % 6:
            raise ConnectionFailed("a SETTINGS frame of a length not a multiple of 6")
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_STREAM_ID:
                    raise ConnectionFailed("an initial window size over 2^31-1 (FLOW_CONTROL_ERROR)")
                delta, self._peer_initial_window = value - self._peer_initial_window, value
                for open_id in self._stream_windows:
                    self._stream_windows[open_id] += delta
            elif key == SETTINGS_MAX_FRAME_SIZE:
                self._peer_max_frame = max(MAX_FRAME_SIZE, min(value, 2**24 - 1))
            # HEADER_TABLE_SIZE bounds the table our encoder may use: it uses none
        self._write(frame(SETTINGS, ACK, 0))
        self._flush_pending()

    def _on_goaway(self, payload: bytes) -> None:
        if len(payload) < 8:
            raise ConnectionFailed("a GOAWAY frame shorter than 8 bytes")
        last, code = struct.unpack_from(">II", payload)
        self.last_stream_id = last & MAX_STREAM_ID
        detail = payload[8:].decode("utf-8", "replace").strip()
        self.closed_reason = "the server is closing the connection (GOAWAY" + (f": {detail})" if detail else ")")
        if code not in (NO_ERROR, 0xB):  # ENHANCE_YOUR_CALM (0xb): too many pings, etc.
            self.closed_reason += f", error code {code}"
        for stream_id in [s for s in self._streams if s > self.last_stream_id]:
            self._end(stream_id, StreamError(self.closed_reason, unprocessed=True))
        self._close_if_drained()

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionFailed("a WINDOW_UPDATE frame not 4 bytes long")
        increment = int.from_bytes(payload, "big") & MAX_STREAM_ID
        if stream_id == 0:
            self._send_window += increment
        elif stream_id in self._stream_windows:
            self._stream_windows[stream_id] += increment
        self._flush_pending()

    def _flush_pending(self) -> None:
        out = [f for sid, s in self._streams.items() if s.pending for f in self._body_frames(sid, s)]
        if out:
            self._write(b"".join(out))

    # --- endings ----------------------------------------------------------------------------

    def _end(self, stream_id: int, error: StreamError | None) -> None:
        stream = self._streams.pop(stream_id, None)
        self._stream_windows.pop(stream_id, None)
        if stream is None or stream.done.done():
            return
        if error is None:
            stream.done.set_result(stream.answer)
        else:
            stream.done.set_exception(error)
        self._close_if_drained()

    def _close_if_drained(self) -> None:
        # After a GOAWAY (or once unusable) the connection serves its open streams, then closes.
        if not self._streams and self.closed_reason is not None and self.transport is not None:
            self.transport.close()

    def _fail_connection(self, reason: str, code: int, *, unprocessed: bool = False) -> None:
        self.closed_reason = reason
        for stream_id in list(self._streams):
            self._end(stream_id, StreamError(reason, unprocessed=unprocessed))
        if self.transport is not None and not self.transport.is_closing():
            # The last stream id is the last one the peer started that we processed: a server starts none.
            self.transport.write(frame(GOAWAY, 0, 0, struct.pack(">II", 0, code)))
            self.transport.close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


def _lost_reason(exc: Exception | None) -> str:
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, ssl.SSLError) and exc.reason:  # an alert after the handshake: TLS 1.3 client certificates
        return f"TLS handshake failed: {exc.reason.lower().replace('_', ' ')}"
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__


def _unpadded(flags: int, payload: bytes) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise ConnectionFailed("padding longer than the frame")
    return payload[1 : len(payload) - payload[0]]


def _reset_reason(code: int) -> str:
    names = {NO_ERROR: "NO_ERROR", PROTOCOL_ERROR: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", REFUSED_STREAM:
             "REFUSED_STREAM", CANCEL: "CANCEL", 0xB: "ENHANCE_YOUR_CALM", 0xD: "HTTP_1_1_REQUIRED"}  # fmt: skip
    return f"the server reset the stream ({names.get(code, f'error code {code}')})"
