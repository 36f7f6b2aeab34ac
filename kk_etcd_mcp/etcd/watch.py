"""A watch stream that resumes where it left off and never hangs on compaction.

etcd3aio's own watch resumes from the last *header* revision, which for a catch-up batch is the
store's current revision, not the last event delivered: a broken stream could skip events. And
after etcd cancels a watch (compaction) it keeps waiting on the open stream forever. So this module
drives the Watch RPC itself, with etcd3aio's generated stub (private, so etcd3aio is pinned to the
tested version in pyproject.toml): it resumes from the revision after the last event it yielded, and
turns a cancel into ``CompactedError`` (or the mapped failure). ``list_and_watch`` builds on it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import grpc
from etcd3aio._protobuf import WatchCreateRequest, WatchRequest, WatchStub

from ..backoff import Backoff
from ..errors import CompactedError, KkEtcdError, UnavailableError
from ..grpc_await import await_grpc, end_call
from .convert import watch_event
from .errors import is_token_problem
from .types import WatchBatch

log = logging.getLogger(__name__)

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL)
_INITIAL_BACKOFF = 0.2
_MAX_BACKOFF = 5.0


class _Resubscribe(Exception):
    """The stream ended in a way a fresh Watch call can cure (after authenticating, if ``reauth``)."""

    def __init__(self, message: str, *, reauth: bool = False) -> None:
        super().__init__(message)
        self.reauth = reauth


async def watch_stream(
    channel: Any,
    key: bytes,
    range_end: bytes,
    *,
    start_revision: int,
    prev_kv: bool,
    metadata: Callable[[], tuple[tuple[str, str], ...]],
    on_auth_error: Callable[[], Awaitable[None]],
    describe_error: Callable[[BaseException], KkEtcdError],
) -> AsyncIterator[WatchBatch]:
    next_revision = start_revision
    backoff = Backoff(_INITIAL_BACKOFF, _MAX_BACKOFF)
    stub = WatchStub(channel)
    while True:
        create = WatchCreateRequest(
            key=key, range_end=range_end, start_revision=next_revision, prev_kv=prev_kv, progress_notify=True
        )
        # The write/read API rather than a request generator: a generator left suspended in grpc's task
        # would be finalised later on whatever loop is current, or on a closed one.
        call = stub.Watch(metadata=metadata() or None)
        try:
            await await_grpc(call.write(WatchRequest(create_request=create)))
            while (resp := await await_grpc(call.read())) is not grpc.aio.EOF:
                if resp.canceled or resp.compact_revision:
                    _raise_for_cancel(resp, key, next_revision)
                if resp.created:
                    if next_revision == 0:  # "from now": anchor it so a resume does not skip anything
                        next_revision = int(resp.header.revision) + 1
                    continue
                if resp.events:
                    events = [watch_event(ev) for ev in resp.events]
                    next_revision = events[-1].kv.mod_revision + 1
                    backoff.reset()
                    yield WatchBatch(revision=int(resp.header.revision), events=events)
                else:  # progress notification: etcd sends these only to watchers that caught up
                    next_revision = max(next_revision, int(resp.header.revision) + 1)
            raise _Resubscribe("etcd closed the watch stream")
        except _Resubscribe as exc:
            reason = str(exc)
            if exc.reauth:
                await _retry_auth(on_auth_error)
        except grpc.aio.AioRpcError as exc:
            if is_token_problem(exc):
                reason = "its token expired"
                await _retry_auth(on_auth_error)
            elif exc.code() in _RETRYABLE:
                reason = f"broken ({exc.code().name})"
            else:
                raise describe_error(exc) from exc
        finally:
            await end_call(call)
        delay = backoff.next_delay()
        log.warning("watch on %r: %s; resuming from revision %d in %.1fs", key, reason, next_revision, delay)
        await anyio.sleep(delay)


def _raise_for_cancel(resp: Any, key: bytes, next_revision: int) -> None:
    if resp.compact_revision:
        compact = int(resp.compact_revision)
        raise CompactedError(
            f"watch on {key.decode(errors='backslashreplace')} cannot resume from revision {next_revision}: "
            f"etcd compacted its history up to revision {compact}; list again and watch from there",
            compact_revision=compact,
        )
    reason = resp.cancel_reason or "no reason given"
    if is_token_problem(Exception(reason)):
        raise _Resubscribe(f"etcd canceled the watch ({reason})", reauth=True)
    raise UnavailableError(f"etcd canceled the watch on {key.decode(errors='backslashreplace')}: {reason}")


async def _retry_auth(on_auth_error: Callable[[], Awaitable[None]]) -> None:
    try:
        await on_auth_error()
    except UnavailableError as exc:
        log.warning("watch: cannot authenticate again yet: %s", exc)
