"""EtcdClient: the adapter every other package uses to talk to etcd.

Every call is bounded by the request timeout (counted while the event loop runs: see ``rpc``),
authenticates lazily (so the server starts while etcd is down and recovers when it comes back),
re-authenticates once when the token expired, and maps failures onto ``kk_etcd_mcp.errors``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import grpc
from etcd3aio import EtcdError, prefix_range_end
from etcd3aio._protobuf import Compare as PbCompare
from etcd3aio._protobuf import RequestOp
from etcd3aio.client import Etcd3Client
from etcd3aio.kv import KVService

from ..errors import InvalidArgumentError
from .connection import ChannelFactory, parse_endpoint, system_ca_certificates
from .convert import delete_result, put_result, range_page, txn_result
from .errors import grpc_details, is_token_problem, map_error
from .rpc import await_rpc
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

log = logging.getLogger(__name__)

T = TypeVar("T")
BytesLike = str | bytes

_RPC_FAILURES = (EtcdError, grpc.aio.AioRpcError, TimeoutError)
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


def _read_file(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read TLS file {path}: {exc.strerror}") from None


class EtcdClient:
    """Async etcd client. Use as ``async with EtcdClient([...]) as etcd:``."""

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
        parsed = [parse_endpoint(url) for url in endpoints]
        tls_endpoints = any(e.tls for e in parsed)
        self.endpoints = ",".join(e.url for e in parsed)
        self.username = username
        self._password = password
        self._timeout = request_timeout
        ca_cert = _read_file(ca_file)
        if ca_cert is None and tls_endpoints:
            ca_cert = system_ca_certificates()
            if ca_cert is None:
                raise InvalidArgumentError(
                    "no trusted CA certificates found on this system for the https:// etcd endpoint; "
                    "set ca_file (KK_ETCD_CA_FILE) to the CA that signed etcd's certificate"
                )
        tls = {"ca_cert": ca_cert, "cert_chain": _read_file(cert_file), "cert_key": _read_file(key_file)}
        # The name the server certificate must carry is the host as written: parse_endpoint turns
        # "localhost" into 127.0.0.1 for the channel, but a certificate may name only "localhost".
        server_name = urlsplit(parsed[0].url).hostname if ca_cert else None
        # etcd3aio retries transient failures itself; our timeout bounds all attempts together.
        self._raw = Etcd3Client(tls_server_name=server_name, **tls)
        self._raw._manager = ChannelFactory(parsed)
        self._token: str | None = None  # None: not authenticated yet; "": auth is off in etcd
        self._auth_lock = anyio.Lock()

    @property
    def request_timeout(self) -> float:
        return self._timeout

    async def __aenter__(self) -> EtcdClient:
        await self._raw.connect()  # creates the channel only; nothing is sent yet
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):  # also on shutdown by cancellation
            await self._raw.close()

    # Plumbing -------------------------------------------------------------------------------------

    @property
    def _svc(self) -> Etcd3Client:
        if self._raw.kv is None:
            raise RuntimeError("EtcdClient is not open: use 'async with EtcdClient(...)'")
        return self._raw

    async def _authenticate(self) -> None:
        if self.username is None or self._token is not None:
            return
        async with self._auth_lock:
            if self._token is not None:
                return
            try:
                assert self._svc.auth is not None
                authenticate = self._svc.auth.authenticate(self.username, self._password or "")
                resp = await await_rpc(authenticate, within=self._timeout)
            except _RPC_FAILURES as exc:
                if "authentication is not enabled" in grpc_details(exc):
                    self._token = ""
                    return
                raise map_error(
                    exc,
                    endpoints=self.endpoints,
                    user=self.username,
                    action="authenticate as",
                    subject=self.username,
                ) from exc
            self._token = resp.token
            self._raw.set_token(resp.token)

    async def login(self) -> bool:
        """Authenticate as the configured user now, even while a token is held: the proof that its
        credentials get in. True when etcd has authentication on, False when it is off (or no user is
        configured); ``AuthenticationFailedError`` when etcd rejects the password."""
        self._forget_token()
        await self._authenticate()
        return bool(self._token)

    def _forget_token(self) -> None:
        self._token = None
        self._raw.set_token(None)

    async def _call(
        self, action: str, subject: str, fn: Callable[[], Awaitable[T]], *, endpoints: str | None = None
    ) -> T:
        """``fn`` authenticated, retried once on an expired token, failures mapped; ``endpoints``
        names where ``fn`` went when that is not the configured endpoints (one member's own URL)."""
        for attempt in (1, 2):
            await self._authenticate()
            try:
                return await await_rpc(fn(), within=self._timeout)
            except _RPC_FAILURES as exc:
                if attempt == 1 and self.username is not None and is_token_problem(exc):
                    log.info("etcd token expired or missing; authenticating again")
                    self._forget_token()
                    continue
                raise map_error(
                    exc, endpoints=endpoints or self.endpoints, user=self.username, action=action, subject=subject
                ) from exc
        raise AssertionError("unreachable")

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
        kv = self._svc.kv
        assert kv is not None
        resp = await self._call(
            "read",
            self._subject(key),
            lambda: kv.get(
                range_start(key, range_end),
                as_bytes(range_end) if range_end is not None else None,
                revision=revision,
                limit=limit,
                keys_only=keys_only,
                count_only=count_only,
            ),
        )
        return range_page(resp)

    async def put(self, key: BytesLike, value: BytesLike, *, lease: int = 0, prev_kv: bool = False) -> PutResult:
        kv = self._svc.kv
        assert kv is not None
        resp = await self._call(
            "write",
            self._subject(key),
            lambda: kv.put(as_bytes(key), as_bytes(value), lease=lease, prev_kv=prev_kv),
        )
        return put_result(resp)

    async def delete(
        self, key: BytesLike, range_end: BytesLike | None = None, *, prev_kv: bool = False
    ) -> DeleteResult:
        kv = self._svc.kv
        assert kv is not None
        resp = await self._call(
            "delete",
            self._subject(key),
            lambda: kv.delete(
                range_start(key, range_end),
                as_bytes(range_end) if range_end is not None else None,
                prev_kv=prev_kv,
            ),
        )
        return delete_result(resp)

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[TxnOp], failure: Sequence[TxnOp] = ()
    ) -> TxnResult:
        """One atomic transaction; ``subject`` of errors is the first key it touches."""
        kv = self._svc.kv
        assert kv is not None
        pb_compares = [_to_pb_compare(c) for c in compares]
        pb_success = [_to_pb_op(op) for op in success]
        pb_failure = [_to_pb_op(op) for op in failure]
        first = compares[0].key if compares else success[0].key if success else b""
        resp = await self._call(
            "write",
            self._subject(first),
            lambda: kv.txn(pb_compares, pb_success, pb_failure),
        )
        return txn_result(resp)

    async def compact(self, revision: int, *, physical: bool = True) -> None:
        kv = self._svc.kv
        assert kv is not None
        await self._call(
            "compact",
            f"revision {revision}",
            lambda: kv.compact(revision, physical=physical),
        )

    async def current_revision(self) -> int:
        """The store's current revision (also a cheap liveness probe)."""
        page = await self.range(b"\0", count_only=True)
        return page.revision

    # Leases ---------------------------------------------------------------------------------------

    async def lease_grant(self, ttl: int) -> int:
        lease = self._svc.lease
        assert lease is not None
        resp = await self._call("grant a lease of", f"{ttl}s", lambda: lease.grant(ttl))
        return int(resp.ID)

    async def lease_revoke(self, lease_id: int) -> None:
        lease = self._svc.lease
        assert lease is not None
        await self._call("revoke", f"lease {lease_id:x}", lambda: lease.revoke(lease_id))

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
        await self._authenticate()  # maps its own failures
        channel: Any = self._raw._channel  # etcd3aio's own watch resumes from a header revision that can skip events
        async for batch in watch_stream(
            channel,
            range_start(key, range_end),
            as_bytes(range_end) if range_end is not None else b"",
            start_revision=start_revision,
            prev_kv=prev_kv,
            metadata=lambda: (("token", self._token),) if self._token else (),
            on_auth_error=self._forget_and_authenticate,
            describe_error=lambda exc: map_error(
                exc, endpoints=self.endpoints, user=self.username, action="watch", subject=self._subject(key)
            ),
        ):
            yield batch

    async def _forget_and_authenticate(self) -> None:
        self._forget_token()
        await self._authenticate()


def _to_pb_compare(c: Compare) -> Any:
    kwargs: dict[str, Any] = {"result": _PB_OP[c.op], "target": _PB_TARGET[c.target], "key": c.key}
    field = {"mod": "mod_revision", "create": "create_revision", "version": "version", "value": "value"}[c.target]
    kwargs[field] = c.value
    return PbCompare(**kwargs)


def _to_pb_op(op: TxnOp) -> RequestOp:
    if isinstance(op, Put):
        return KVService.txn_op_put(op.key, op.value, lease=op.lease, prev_kv=op.prev_kv)
    if isinstance(op, Delete):
        return KVService.txn_op_delete(range_start(op.key, op.range_end), range_end=op.range_end, prev_kv=op.prev_kv)
    if isinstance(op, Get):
        return KVService.txn_op_get(range_start(op.key, op.range_end), range_end=op.range_end)
    raise TypeError(f"unknown transaction operation {op!r}")
