"""A gRPC proxy in front of a real etcd that answers like etcd 3.4 in one respect: no AuthStatus RPC.

etcd added ``Auth/AuthStatus`` in 3.5; a 3.4 server answers it with UNIMPLEMENTED. Only etcd 3.5.1 is
installed here, so the proxy forwards every unary call (bytes in, bytes out, with the caller's auth
token) to the real etcd, except that one, which it leaves unhandled: gRPC then answers UNIMPLEMENTED,
exactly as a server without the method does. Everything else the client sees is real etcd.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

MISSING_IN_34 = "/etcdserverpb.Auth/AuthStatus"


class _Forward(grpc.GenericRpcHandler):
    def __init__(self, upstream: grpc.aio.Channel) -> None:
        self.upstream = upstream

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if method == MISSING_IN_34:
            return None
        call = self.upstream.unary_unary(method)  # no (de)serializers: the request and reply stay bytes

        async def forward(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            metadata = tuple((k, v) for k, v in context.invocation_metadata() or () if k == "token")
            try:
                reply: bytes = await call(request, metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
            return reply

        return grpc.unary_unary_rpc_method_handler(forward)


@asynccontextmanager
async def etcd34_proxy(etcd_address: str) -> AsyncIterator[str]:
    """Yields the proxy's URL (``http://127.0.0.1:<port>``) for an etcd at ``host:port``."""
    async with grpc.aio.insecure_channel(etcd_address) as upstream:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_Forward(upstream),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await server.stop(grace=None)
