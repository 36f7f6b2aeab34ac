"""A loopback TCP proxy whose connections a test can cut, to break streams without stopping etcd, or
silence: etcd still gets what the client sends, but its answers on those connections are dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from anyio.abc import SocketStream, TaskStatus


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.refusing = False
        self._scopes: set[anyio.CancelScope] = set()
        self._silenced: set[anyio.CancelScope] = set()  # the connections whose answers are dropped

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until restore()."""
        self.refusing = True
        for scope in list(self._scopes):
            scope.cancel()

    def restore(self) -> None:
        self.refusing = False

    def silence(self) -> None:
        """From now on drop what etcd sends on the connections open now; later connections work."""
        self._silenced |= self._scopes

    async def _handle(self, client: SocketStream) -> None:
        async with client:
            if self.refusing:
                return
            try:
                upstream = await anyio.connect_tcp(*self.target)
            except OSError:
                return
            async with upstream, anyio.create_task_group() as tg:
                self._scopes.add(tg.cancel_scope)
                scope = tg.cancel_scope
                tg.start_soon(_pump, client, upstream, scope, lambda: False)
                tg.start_soon(_pump, upstream, client, scope, lambda: scope in self._silenced)
            self._scopes.discard(tg.cancel_scope)
            self._silenced.discard(tg.cancel_scope)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener:
            task_status.started()
            await listener.serve(self._handle)


async def _pump(
    source: SocketStream, sink: SocketStream, scope: anyio.CancelScope, silenced: Callable[[], bool]
) -> None:
    try:
        async for chunk in source:
            if not silenced():
                await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    scope.cancel()  # one side closed: close the other


@asynccontextmanager
async def tcp_proxy(target_host: str, target_port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(target_host, target_port)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.run)
        yield proxy
        tg.cancel_scope.cancel()
