"""EtcdClient: the adapter every other package uses to talk to etcd (KV, transactions, leases, watch).

Every call goes through the client's ``transport`` (``transport.py``; KV requests on its own HTTP/2
channel, ``kv_channel.py``): bounded by the request timeout
(counted while the event loop runs: ``grpc_await``), authenticated lazily (so the server starts while
etcd is down and recovers when it comes back), authenticated again once when the token expired, and
its failures mapped onto ``kk_etcd_mcp.errors``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from etcd3aio import prefix_range_end
from etcd3aio._protobuf import CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest

# etcd3aio's public transaction builders cover value, version and create revision, not mod revision,
# so compares are built from its generated protobuf class (private: etcd3aio is pinned in pyproject.toml).
from etcd3aio._protobuf import Compare as PbCompare
from etcd3aio.kv import KVService

from .convert import delete_result, put_result, range_page, txn_result
from .endpoint import parse_endpoint
from .transport import EtcdTransport, TlsFiles
from .types import (
    Compare,
    Delete,
    DeleteResult,
    Get,
    KeyValue,
    Put,
    PutResult,
    RangePage,
    TxnOp,
    TxnResult,
    WatchBatch,
)
from .watch import watch_stream

BytesLike = str | bytes

PAGE_SIZE = 1000  # keys per read of range_pages

_PB_TARGET = {
    "mod": PbCompare.MOD,
    "create": PbCompare.CREATE,
    "version": PbCompare.VERSION,
    "value": PbCompare.VALUE,
}
_PB_OP = {"==": PbCompare.EQUAL, "!=": PbCompare.NOT_EQUAL, "<": PbCompare.LESS, ">": PbCompare.GREATER}


def as_bytes(data: BytesLike) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


def prefix_end(prefix: BytesLike) -> bytes:
    """The exclusive range end that selects every key starting with ``prefix``."""
    end: bytes = prefix_range_end(as_bytes(prefix))
    return end


def range_start(key: BytesLike, range_end: BytesLike | None) -> bytes:
    """The key a request over ``[key, range_end)`` sends: etcd refuses an empty key ("key is not
    provided"), so a range from the first key starts at ``b"\\0"``, as etcd's Go client and etcdctl send
    it. Every range, delete, watch and transaction read or delete goes through here, so a caller can
    pass the empty prefix (or a policy range that starts at ``b""``) as it is."""
    raw = as_bytes(key)
    return b"\0" if not raw and range_end else raw


class EtcdClient:
    """Async etcd client. Use as ``async with EtcdClient([...]) as etcd:``.

    Bad TLS files are reported (``InvalidArgumentError``) when the client is entered: they are read then,
    off the event loop.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        request_timeout: float = 5.0,
    ) -> None:
        # The channel, etcd3aio's services and the token: for the adapter's own modules only.
        self.transport = EtcdTransport(
            [parse_endpoint(url) for url in endpoints],
            username=username,
            password=password,
            tls=TlsFiles(ca_file, cert_file, key_file),
            request_timeout=request_timeout,
        )

    @property
    def endpoints(self) -> str:
        """The configured endpoints, as written in messages: ``http://a:2379,http://b:2379``."""
        return self.transport.endpoints

    @property
    def username(self) -> str | None:
        return self.transport.username

    @property
    def request_timeout(self) -> float:
        return self.transport.request_timeout

    async def __aenter__(self) -> EtcdClient:
        await self.transport.open()  # reads the TLS files and creates the channel; nothing is sent yet
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()

    async def login(self) -> bool:
        """Authenticate as the configured user now, even while a token is held: the proof that its
        credentials get in. True when etcd has authentication on, False when it is off (or no user is
        configured); ``AuthenticationFailedError`` when etcd rejects the password."""
        await self.transport.reauthenticate()
        return self.transport.auth_enabled

    @staticmethod
    def _subject(key: BytesLike) -> str:
        return as_bytes(key).decode(errors="backslashreplace")

    # KV -------------------------------------------------------------------------------------------

    async def get(self, key: BytesLike, *, revision: int = 0) -> KeyValue | None:
        page = await self.range(key, revision=revision)
        return page.kvs[0] if page.kvs else None

    async def range(
        self,
        key: BytesLike,
        range_end: BytesLike | None = None,
        *,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> RangePage:
        transport = self.transport
        request = RangeRequest(
            key=range_start(key, range_end),
            range_end=as_bytes(range_end) if range_end is not None else b"",
            revision=revision,
            limit=limit,
            keys_only=keys_only,
            count_only=count_only,
        )
        resp = await transport.kv_call("read", self._subject(key), transport.kv.range, request)
        return range_page(resp)

    async def range_pages(
        self,
        key: BytesLike,
        range_end: BytesLike | None = None,
        *,
        revision: int = 0,
        keys_only: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[RangePage]:
        """Every key of ``[key, range_end)``, a page of at most ``page_size`` keys at a time, all read at
        one revision: ``revision``, else the first page's. Each page's ``revision`` is that one (etcd's
        header would name its current revision instead). An empty range still yields one (empty) page,
        so the revision is always known."""
        start = as_bytes(key)
        while True:
            page = await self.range(start, range_end, limit=page_size, revision=revision, keys_only=keys_only)
            if revision:
                page = replace(page, revision=revision)
            revision = page.revision
            yield page
            if not page.more or not page.kvs:
                return
            start = page.kvs[-1].key + b"\0"

    async def put(self, key: BytesLike, value: BytesLike, *, lease: int = 0, prev_kv: bool = False) -> PutResult:
        transport = self.transport
        request = PutRequest(key=as_bytes(key), value=as_bytes(value), lease=lease, prev_kv=prev_kv)
        resp = await transport.kv_call("write", self._subject(key), transport.kv.put, request)
        return put_result(resp)

    async def delete(
        self, key: BytesLike, range_end: BytesLike | None = None, *, prev_kv: bool = False
    ) -> DeleteResult:
        transport = self.transport
        request = DeleteRangeRequest(
            key=range_start(key, range_end),
            range_end=as_bytes(range_end) if range_end is not None else b"",
            prev_kv=prev_kv,
        )
        resp = await transport.kv_call("delete", self._subject(key), transport.kv.delete_range, request)
        return delete_result(resp)

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[TxnOp], failure: Sequence[TxnOp] = ()
    ) -> TxnResult:
        """One atomic transaction; ``subject`` of errors is the first key it touches."""
        transport = self.transport
        request = TxnRequest(
            compare=[_to_pb_compare(c) for c in compares],
            success=[_to_pb_op(op) for op in success],
            failure=[_to_pb_op(op) for op in failure],
        )
        first = compares[0].key if compares else success[0].key if success else b""
        resp = await transport.kv_call("write", self._subject(first), transport.kv.txn, request)
        return txn_result(resp)

    async def compact(self, revision: int, *, physical: bool = True) -> None:
        transport = self.transport
        request = CompactionRequest(revision=revision, physical=physical)
        await transport.kv_call("compact", f"revision {revision}", transport.kv.compact, request)

    async def current_revision(self) -> int:
        """The store's current revision (also a cheap liveness probe)."""
        page = await self.range(b"\0", count_only=True)
        return page.revision

    # Leases ---------------------------------------------------------------------------------------

    async def lease_grant(self, ttl: int) -> int:
        lease = self.transport.services.lease
        resp = await self.transport.call("grant a lease of", f"{ttl}s", lambda: lease.grant(ttl))
        return int(resp.ID)

    async def lease_revoke(self, lease_id: int) -> None:
        lease = self.transport.services.lease
        await self.transport.call("revoke", f"lease {lease_id:x}", lambda: lease.revoke(lease_id))

    # Watch ----------------------------------------------------------------------------------------

    async def watch(
        self,
        key: BytesLike,
        range_end: BytesLike | None = None,
        *,
        start_revision: int = 0,
        prev_kv: bool = False,
    ) -> AsyncGenerator[WatchBatch, None]:
        """Batches of events for a key or range, from ``start_revision`` on (0: from now).

        Survives broken streams by resuming after the last revision it delivered; raises
        ``CompactedError`` when etcd no longer has the revision to resume from.
        """
        transport = self.transport
        await transport.authenticate()  # maps its own failures
        # etcd3aio's own watch resumes from a header revision that can skip events: see watch.py
        async for batch in watch_stream(
            transport.channel,
            range_start(key, range_end),
            as_bytes(range_end) if range_end is not None else b"",
            start_revision=start_revision,
            prev_kv=prev_kv,
            metadata=transport.metadata,
            on_auth_error=transport.reauthenticate,
            describe_error=lambda exc: transport.map_error(exc, "watch", self._subject(key)),
        ):
            yield batch


def _to_pb_compare(c: Compare) -> Any:
    kwargs: dict[str, Any] = {"result": _PB_OP[c.op], "target": _PB_TARGET[c.target], "key": c.key}
    if c.range_end is not None:
        kwargs["range_end"] = c.range_end
    field = {"mod": "mod_revision", "create": "create_revision", "version": "version", "value": "value"}[c.target]
    kwargs[field] = c.value
    return PbCompare(**kwargs)


def _to_pb_op(op: TxnOp) -> Any:
    if isinstance(op, Put):
        return KVService.txn_op_put(op.key, op.value, lease=op.lease, prev_kv=op.prev_kv)
    if isinstance(op, Delete):
        return KVService.txn_op_delete(range_start(op.key, op.range_end), range_end=op.range_end, prev_kv=op.prev_kv)
    if isinstance(op, Get):
        return KVService.txn_op_get(range_start(op.key, op.range_end), range_end=op.range_end)
    raise TypeError(f"unknown transaction operation {op!r}")
