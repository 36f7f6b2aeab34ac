"""LeaseSession: a lease kept alive in the background, shaped like etcd's ``concurrency.Session``.

``lost`` is set once etcd says the lease is gone or no keepalive got through for a whole TTL, so
keys attached to it must be presumed deleted. Leaving the context revokes the lease (bounded by the
request timeout), so whatever hangs on it disappears at once; ``orphan()`` skips that revoke.
etcd3aio's ``LeaseKeepalive`` only flips a flag and gives up after one failed stream, and its
``keep_alive`` feeds the stream from a generator (left suspended in grpc's task, it would be finalised
later on whatever loop is current), so the loop here drives the LeaseKeepAlive stream itself, with
etcd3aio's generated stub (private: etcd3aio is pinned in pyproject.toml), and retries until the lease
would have expired.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import grpc
from etcd3aio._protobuf import LeaseKeepAliveRequest, LeaseStub

from ..errors import KkEtcdError
from ..grpc_await import await_grpc, end_call
from .errors import is_token_problem

if TYPE_CHECKING:
    from .client import EtcdClient

log = logging.getLogger(__name__)

_RETRY_DELAY = 0.5
_REVOKE_WITHIN = 2.0


class LeaseSession:
    def __init__(self, etcd: EtcdClient, ttl: int = 10) -> None:
        if ttl < 2:
            raise ValueError("a lease TTL must be at least 2 seconds")
        self.etcd = etcd
        self.ttl = ttl
        self.lease_id = 0
        self.lost = anyio.Event()
        self._revoke_on_exit = True
        self._context: AbstractAsyncContextManager[LeaseSession] | None = None

    async def __aenter__(self) -> LeaseSession:
        self._context = self._run()
        return await self._context.__aenter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._context is not None, "not entered"
        return await self._context.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[LeaseSession]:
        self.lease_id = await self.etcd.lease_grant(self.ttl)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keep_alive)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        finally:
            if self._revoke_on_exit and not self.lost.is_set():
                with anyio.CancelScope(shield=True):  # also when leaving by cancellation
                    await self._revoke()

    async def _revoke(self) -> None:
        # Bounded: a stop must stay quick while etcd is away; the lease then expires by itself.
        with anyio.move_on_after(_REVOKE_WITHIN) as scope:
            try:
                await self.etcd.lease_revoke(self.lease_id)
            except KkEtcdError as error:
                log.warning("could not revoke lease %x (it expires within %ds): %s", self.lease_id, self.ttl, error)
        if scope.cancelled_caught:
            log.warning("could not revoke lease %x in time; it expires within %ds", self.lease_id, self.ttl)

    def orphan(self) -> None:
        """Leave the lease to expire by itself instead of revoking it on exit."""
        self._revoke_on_exit = False

    async def _keep_alive(self) -> None:
        expires_at = anyio.current_time() + self.ttl
        while anyio.current_time() < expires_at:
            try:
                expires_at = await self._stream(expires_at)
            except KkEtcdError as error:
                log.warning("lease %x keepalive: %s", self.lease_id, error)
            if self.lost.is_set():
                return
            await anyio.sleep(min(_RETRY_DELAY, max(0.0, expires_at - anyio.current_time())))
        log.warning("lease %x: no keepalive reached etcd for %ds; it has expired", self.lease_id, self.ttl)
        self.lost.set()

    async def _stream(self, expires_at: float) -> float:
        """Renew over one LeaseKeepAlive stream until it fails; returns the latest known expiry."""
        transport = self.etcd.transport
        metadata = await transport.stream_metadata()
        call = LeaseStub(transport.channel).LeaseKeepAlive(metadata=metadata)
        try:
            while True:
                sent_at = anyio.current_time()
                await await_grpc(call.write(LeaseKeepAliveRequest(ID=self.lease_id)), self.etcd.request_timeout)
                resp = await await_grpc(call.read(), self.etcd.request_timeout)
                if resp is grpc.aio.EOF:
                    return expires_at
                if resp.TTL <= 0:
                    log.warning("lease %x: etcd says it has expired", self.lease_id)
                    self.lost.set()
                    return expires_at
                expires_at = sent_at + resp.TTL
                await anyio.sleep(max(1.0, math.floor(resp.TTL / 3)))
        except TimeoutError:
            log.warning("lease %x keepalive: no answer within %gs", self.lease_id, self.etcd.request_timeout)
        except grpc.aio.AioRpcError as exc:
            if is_token_problem(exc):
                transport.forget_token()
            log.warning("lease %x keepalive failed: %s", self.lease_id, exc.details() or exc.code().name)
        except asyncio.InvalidStateError:  # grpc.aio's answer to a write on a stream etcd has already ended
            log.warning("lease %x keepalive stream ended (etcd went away)", self.lease_id)
        finally:
            await end_call(call)
        return expires_at
