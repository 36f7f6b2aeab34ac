"""The stdio transport, read and written inside the event loop.

mcp's own stdio transport reads stdin and writes stdout through anyio worker threads. That costs a
thread hop per message, and a blocked stdin read cannot be cancelled: its (non-daemon) thread keeps
the process alive after SIGTERM until the client closes stdin. Here stdin and stdout are asyncio
pipes (cancellable, no hop). When they are not pipes or sockets (a terminal, a file), stdin falls
back to a daemon reader thread and stdout to blocking writes in a worker thread: asyncio would leave
a shared terminal non-blocking behind us.

Every request that comes in here is the stdio client's: the one user who started the server, with
every scope (``identity.STDIO``). The transport says so itself; a server run without it serves nobody.

While serving, fd 0 reads /dev/null and fd 1 writes to stderr, as mcp does, so a stray print or a
child process can never corrupt the MCP stream; both are restored afterwards.
"""

import asyncio
import contextlib
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

from .identity import STDIO, acting_as

MAX_LINE = 64 * 1024 * 1024  # one JSON-RPC message; etcd itself refuses requests over ~1.5 MiB


def _is_pipe(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class PipeLines:
    """Lines of a pipe read by the event loop (cancellable, no thread)."""

    def __init__(self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport) -> None:
        self._reader = reader
        self._transport = transport

    @classmethod
    async def open(cls, fd: int) -> "PipeLines":
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE)
        pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        return cls(reader, transport)

    async def __aiter__(self) -> AsyncIterator[str]:
        while line := await self._reader.readline():
            yield line.decode("utf-8", errors="replace")

    def close(self) -> None:
        self._transport.close()


class ThreadLines:
    """Lines of any file, read by a daemon thread (with os.read: it holds no lock of sys.stdin)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._send, self._receive = anyio.create_memory_object_stream[str](16)
        token = anyio.lowlevel.current_token()
        threading.Thread(target=self._pump, args=(self._send, token), name="stdin-reader", daemon=True).start()

    def _pump(self, send: MemoryObjectSendStream[str], token: Any) -> None:
        pending = b""
        try:
            while chunk := os.read(self._fd, 65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    anyio.from_thread.run(send.send, line.decode("utf-8", errors="replace") + "\n", token=token)
            if pending:
                anyio.from_thread.run(send.send, pending.decode("utf-8", errors="replace"), token=token)
            anyio.from_thread.run(send.aclose, token=token)
        except (OSError, RuntimeError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # stdin failed or the server is gone: nobody is reading any more

    def __aiter__(self) -> AsyncIterator[str]:
        return self._receive.__aiter__()


class PipeWriter:
    """The ``write``/``flush`` that mcp's stdio_server needs, on an asyncio pipe."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    @classmethod
    async def open(cls, fd: int) -> "PipeWriter":
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(os.dup(fd), "wb", buffering=0)
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, pipe)
        return cls(asyncio.StreamWriter(transport, protocol, None, loop))

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()


@contextlib.contextmanager
def _redirected(fd: int, target: int) -> Iterator[int]:
    """Yield a private duplicate of ``fd`` and point ``fd`` at ``target`` until the block ends."""
    private = os.dup(fd)
    os.dup2(target, fd)
    try:
        yield private
    finally:
        os.dup2(private, fd)
        os.close(private)


async def run_stdio(server: MCPServer) -> None:
    """Serve ``server`` over stdin/stdout until stdin closes or the caller is cancelled."""
    with acting_as(STDIO):  # before any task of the transport or the session starts: they all inherit it
        await _serve(server)


async def _serve(server: MCPServer) -> None:
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_RDONLY)
    with _redirected(0, devnull) as stdin_fd, _redirected(1, 2) as stdout_fd:
        os.close(devnull)
        stdin = await PipeLines.open(stdin_fd) if _is_pipe(stdin_fd) else ThreadLines(os.dup(stdin_fd))
        stdout = await PipeWriter.open(stdout_fd) if _is_pipe(stdout_fd) else None
        try:
            async with stdio_server(
                stdin=cast(anyio.AsyncFile[str], stdin),
                stdout=cast(anyio.AsyncFile[str], stdout) if stdout else _blocking_stdout(stdout_fd),
            ) as (read_stream, write_stream):
                lowlevel = server._lowlevel_server  # MCPServer.run_stdio_async, with our streams
                await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
        finally:
            if isinstance(stdin, PipeLines):
                stdin.close()
            if stdout is not None:
                stdout.close()


def _blocking_stdout(fd: int) -> anyio.AsyncFile[str]:
    """stdout that is not a pipe: plain writes in a worker thread, as mcp does."""
    return anyio.wrap_file(os.fdopen(os.dup(fd), "w", encoding="utf-8"))
