"""etcd's KV service (Range, Put, DeleteRange, Txn, Compact) on our own unary gRPC channel, read on the
event loop.

grpc.aio reads every answer on a poller thread of its own, which then wakes the event loop: inside a
server that waits for its next request, two idle threads woken per etcd request. That made kv_get's
etcd step cost about 2 ms of latency and 1.2 ms of CPU in the server, against 0.3 ms and 0.2 ms on
``h2grpc``'s channel (bench/README.md, "Where kv_get's etcd step goes"). So the KV service, which is
on every tool's path, goes here; streams (watch, lease keep-alive, snapshot) and the rarer unary calls
(leases, auth, maintenance, cluster) stay on etcd3aio's grpc.aio channel.

Retries follow etcd's Go client: a request the server cannot have processed (no connection to any
endpoint, a refused stream) is sent again, and so is a read that etcd answered UNAVAILABLE (no leader,
a member cut off), on the next endpoint; a write that may have been applied is never sent twice.
"""

from __future__ import annotations

from typing import Any, TypeVar

from etcd3aio._protobuf import (
    CompactionRequest,
    CompactionResponse,
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    TxnRequest,
    TxnResponse,
)
from google.protobuf.message import DecodeError, Message

from ..backoff import Backoff
from ..h2grpc.unary import CallError, Metadata, UnaryChannel

KV_SERVICE = "/etcdserverpb.KV/"
ATTEMPTS = 3  # as etcd3aio: one request, two more after a transient failure
MAX_ANSWER = 512 * 1024 * 1024  # bytes; a page of range_pages holds 1,000 values of up to 1.5 MiB each
WINDOW = 4 * 1024 * 1024  # answer bytes etcd may send ahead of our reading: large pages at full speed

R = TypeVar("R", bound=Message)


class KvChannel:
    """etcd's KV service on ``channel``: each method sends one request, with ``metadata`` (the token)."""

    def __init__(self, channel: UnaryChannel) -> None:
        self.channel = channel

    async def range(self, request: RangeRequest, metadata: Metadata) -> RangeResponse:
        return await self._call("Range", request, RangeResponse, metadata, idempotent=True)

    async def put(self, request: PutRequest, metadata: Metadata) -> PutResponse:
        return await self._call("Put", request, PutResponse, metadata, idempotent=False)

    async def delete_range(self, request: DeleteRangeRequest, metadata: Metadata) -> DeleteRangeResponse:
        return await self._call("DeleteRange", request, DeleteRangeResponse, metadata, idempotent=False)

    async def txn(self, request: TxnRequest, metadata: Metadata) -> TxnResponse:
        read_only = all(op.WhichOneof("request") == "request_range" for op in (*request.success, *request.failure))
        return await self._call("Txn", request, TxnResponse, metadata, idempotent=read_only)

    async def compact(self, request: CompactionRequest, metadata: Metadata) -> CompactionResponse:
        return await self._call("Compact", request, CompactionResponse, metadata, idempotent=False)

    async def close(self) -> None:
        await self.channel.close()

    async def _call(
        self, method: str, request: Any, answer_type: type[R], metadata: Metadata, *, idempotent: bool
    ) -> R:
        message = request.SerializeToString()
        backoff: Backoff | None = None  # made on the first failure: seeding its Random costs on every call
        for attempt in range(1, ATTEMPTS + 1):
            try:
                answer = await self.channel.call(KV_SERVICE + method, message, metadata=metadata, idempotent=idempotent)
            except CallError as exc:
                if attempt == ATTEMPTS or exc.code != "UNAVAILABLE" or not (idempotent or exc.unprocessed):
                    raise
                if not exc.unprocessed:
                    self.channel.failover()  # this member said it cannot serve: ask another
                backoff = backoff or Backoff(0.05, 1.0)
                await backoff.sleep()
                continue
            try:
                decoded: R = answer_type.FromString(answer)
            except DecodeError:
                raise CallError("INTERNAL", f"etcd's answer is not a {answer_type.__name__}") from None
            return decoded
        raise AssertionError("unreachable")
