"""The stdio transport, with a stdin reader that a shutdown can leave behind.

mcp's own stdio transport reads stdin in an anyio worker thread: a blocked read cannot be cancelled
and that (non-daemon) thread keeps the process alive after SIGTERM until the client closes stdin.
Here a daemon thread reads the lines and hands them over, so cancelling the server ends it at once.
"""

import os
import threading
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server


class StdinLines:
    """Async iterator over the lines of a file descriptor (UTF-8, bad bytes replaced), fed by a daemon thread.

    The thread reads a duplicate of the descriptor with os.read: it holds no lock of sys.stdin's
    buffer, which interpreter shutdown would otherwise wait for (and abort on).
    """

    def __init__(self, fd: int) -> None:
        self._fd = os.dup(fd)
        self._send, self._receive = anyio.create_memory_object_stream[str](16)

    def start(self) -> None:
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


async def run_stdio(server: MCPServer) -> None:
    """Serve ``server`` over stdin/stdout until stdin closes or the caller is cancelled."""
    stdin = StdinLines(0)
    stdin.start()
    async with stdio_server(stdin=cast(anyio.AsyncFile[str], stdin)) as (read_stream, write_stream):
        lowlevel = server._lowlevel_server  # MCPServer.run_stdio_async, but with our stdin
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
