"""etcd's Maintenance and Cluster APIs: member status, member list, alarms, and the snapshot stream.

Unary calls go through the client's ``transport.call`` (lazy authentication, one retry on an expired token,
bounded by the request timeout, failures mapped). The snapshot is a server stream that may run for
minutes on a large database, so it has no overall deadline; instead every single read of it is
bounded by the request timeout, and a frozen etcd fails the snapshot instead of hanging it.

etcd ends the snapshot stream with the SHA-256 of the database it sent (32 bytes that
``etcdutl snapshot restore`` checks); :meth:`EtcdMaintenance.snapshot` verifies it as the bytes arrive.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import grpc

# etcd3aio's snapshot() gives no bound on each read of the stream, so it is driven with the generated stub
# (private: etcd3aio is pinned in pyproject.toml).
from etcd3aio._protobuf import MaintenanceStub, SnapshotRequest
from etcd3aio.maintenance import AlarmType, MaintenanceService

from ..errors import KkEtcdError, PermissionDeniedError, UnavailableError
from ..grpc_await import await_grpc, end_call
from .client import EtcdClient
from .errors import grpc_details

_DIGEST_SIZE = hashlib.sha256().digest_size  # etcd appends sha256(database) to the stream
_SNAPSHOT_NEEDS = "etcd sends snapshots only to users with role root"

SnapshotWriter = Callable[[bytes], Awaitable[None]]
SnapshotProgress = Callable[[int, int], Awaitable[None]]  # (bytes received, bytes expected)


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """What one member says about itself (etcd's StatusResponse); ``leader`` 0 means no leader."""

    cluster_id: int
    member_id: int
    revision: int
    version: str
    db_size: int
    db_size_in_use: int
    leader: int
    raft_term: int
    raft_index: int
    raft_applied_index: int
    is_learner: bool
    errors: list[str]


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    name: str  # empty while a newly added member has not started yet
    peer_urls: list[str]
    client_urls: list[str]
    is_learner: bool


@dataclass(frozen=True, slots=True)
class Alarm:
    member_id: int
    kind: str  # NOSPACE or CORRUPT


@dataclass(frozen=True, slots=True)
class SnapshotSummary:
    """The snapshot as received: ``size`` bytes with this ``sha256`` (digest trailer included).

    ``revision`` is the store revision just before etcd took the snapshot; ``revision_exact`` says it
    was still the revision right after (etcd takes it before sending the first chunk), so the
    snapshot holds exactly that revision. Otherwise a write landed in between and the snapshot
    holds a revision from ``revision`` to ``revision_after``.
    """

    size: int
    sha256: str
    revision: int
    revision_after: int
    server_version: str  # of the member that sent it: which tool restores it depends on it

    @property
    def revision_exact(self) -> bool:
        return self.revision == self.revision_after


def _member_status(resp: Any) -> MemberStatus:
    return MemberStatus(
        cluster_id=int(resp.header.cluster_id),
        member_id=int(resp.header.member_id),
        revision=int(resp.header.revision),
        version=str(resp.version),
        db_size=int(resp.dbSize),
        db_size_in_use=int(resp.dbSizeInUse),
        leader=int(resp.leader),
        raft_term=int(resp.raftTerm),
        raft_index=int(resp.raftIndex),
        raft_applied_index=int(resp.raftAppliedIndex),
        is_learner=bool(resp.isLearner),
        errors=[str(e) for e in resp.errors],
    )


def _alarm_kind(value: int) -> str:
    try:
        return str(AlarmType(value).name)
    except ValueError:
        return f"alarm {value}"


class _DigestCheck:
    """Hashes a stream whose last 32 bytes must be the SHA-256 of everything before them."""

    def __init__(self) -> None:
        self._body = hashlib.sha256()
        self._tail = b""  # the last bytes seen, held back: they may be the digest
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        data = self._tail + chunk
        self._body.update(data[:-_DIGEST_SIZE])
        self._tail = data[-_DIGEST_SIZE:]

    def verified(self) -> bool:
        return len(self._tail) == _DIGEST_SIZE and self._body.digest() == self._tail

    def sha256(self) -> str:
        """SHA-256 of the whole stream, body and trailer: the hash of the file it was written to."""
        whole = self._body.copy()
        whole.update(self._tail)
        return whole.hexdigest()


class EtcdMaintenance:
    """etcd's Maintenance and Cluster APIs on top of an open :class:`EtcdClient` (token and all)."""

    def __init__(self, etcd: EtcdClient) -> None:
        self.etcd = etcd
        self._transport = etcd.transport

    @property
    def _timeout(self) -> float:
        return self.etcd.request_timeout

    async def status(self) -> MemberStatus:
        """The status of the member the configured endpoints reach."""
        maintenance = self._transport.services.maintenance
        resp = await self._transport.call("read the status of", "etcd", lambda: maintenance.status(max_attempts=1))
        return _member_status(resp)

    async def member_status(self, client_url: str) -> MemberStatus:
        """The status of the member at ``client_url`` (one of its advertised client URLs), over a
        channel of its own, closed afterwards."""
        transport = self._transport
        channel = await transport.member_channel(client_url)
        member = MaintenanceService(channel, max_attempts=1)  # no retries here: the caller tries its next URL

        async def attempt() -> Any:
            member.set_token(transport.token)  # the one an expired token was just replaced with, too
            return await member.status(max_attempts=1)

        try:
            resp = await transport.call("read the status of", f"member {client_url}", attempt, endpoints=client_url)
        finally:
            with anyio.CancelScope(shield=True):
                await channel.close()
        return _member_status(resp)

    async def members(self) -> list[Member]:
        """Every member; a serializable read, so it answers even while the cluster has no quorum."""
        cluster = self._transport.services.cluster
        resp = await self._transport.call(
            "list the members of",
            "etcd",
            lambda: cluster.member_list(linearizable=False, max_attempts=1),
        )
        return [
            Member(
                id=int(m.ID),
                name=str(m.name),
                peer_urls=[str(u) for u in m.peerURLs],
                client_urls=[str(u) for u in m.clientURLs],
                is_learner=bool(m.isLearner),
            )
            for m in resp.members
        ]

    async def alarms(self) -> list[Alarm]:
        """Active alarms of every member (NOSPACE: the database quota is full, writes are refused)."""
        maintenance = self._transport.services.maintenance
        resp = await self._transport.call("list the alarms of", "etcd", lambda: maintenance.alarms(max_attempts=1))
        return [Alarm(member_id=int(a.memberID), kind=_alarm_kind(int(a.alarm))) for a in resp.alarms]

    # Snapshot ----------------------------------------------------------------------------------

    async def snapshot(self, write: SnapshotWriter, progress: SnapshotProgress | None = None) -> SnapshotSummary:
        """Stream a snapshot of the database into ``write``, chunk by chunk, checking etcd's digest.

        ``progress(received, expected)`` follows every chunk; ``expected`` is exact (etcd says how
        many bytes remain). Raises ``UnavailableError`` when etcd sends nothing for a request timeout
        or the stream ends short or corrupt; whatever ``write`` received then is not a snapshot.
        """
        before = await self.status()
        call, first = await self._transport.call("take a snapshot of", "etcd", self._open_snapshot)
        try:
            after = await self.status()  # etcd took the snapshot before it sent the first chunk
            expected = len(first.blob) + int(first.remaining_bytes) + _DIGEST_SIZE
            check = _DigestCheck()
            resp: Any = first
            while resp is not grpc.aio.EOF:
                chunk = bytes(resp.blob)
                check.update(chunk)
                await write(chunk)
                if progress is not None:
                    await progress(check.size, max(expected, check.size))
                resp = await self._next_chunk(call)
        finally:
            await end_call(call)
        if not check.verified():
            raise UnavailableError(
                f"the snapshot stream from etcd at {self.etcd.endpoints} ended incomplete or corrupt "
                f"({check.size} bytes, its SHA-256 trailer does not match); nothing usable was received. Try again."
            )
        return SnapshotSummary(
            size=check.size,
            sha256=check.sha256(),
            revision=before.revision,
            revision_after=after.revision,
            server_version=after.version,
        )

    async def _open_snapshot(self) -> tuple[Any, Any]:
        """Start the stream and wait (bounded) for its first chunk; failures reach ``transport.call`` as gRPC's."""
        transport = self._transport
        call = MaintenanceStub(transport.channel).Snapshot(SnapshotRequest(), metadata=transport.metadata() or None)
        try:
            first = await await_grpc(call.read(), self._timeout)
        except grpc.aio.AioRpcError as exc:
            call.cancel()
            # etcd 3.5 answers a non-root user with code UNKNOWN and "auth: permission denied".
            if exc.code() == grpc.StatusCode.PERMISSION_DENIED or "permission denied" in grpc_details(exc):
                raise self._denied() from exc
            raise
        except BaseException:
            call.cancel()
            raise
        if first is grpc.aio.EOF:
            raise UnavailableError(f"etcd at {self.etcd.endpoints} ended the snapshot stream before sending anything")
        return call, first

    async def _next_chunk(self, call: Any) -> Any:
        try:
            return await await_grpc(call.read(), self._timeout)
        except TimeoutError:
            raise UnavailableError(
                f"etcd at {self.etcd.endpoints} stopped sending the snapshot: nothing arrived "
                f"within {self._timeout:g}s (the request timeout)"
            ) from None
        except grpc.aio.AioRpcError as exc:
            raise self._transport.map_error(exc, "take a snapshot of", "etcd") from exc

    def _denied(self) -> KkEtcdError:
        who = self.etcd.username or "the anonymous user"
        return PermissionDeniedError(f"permission denied: {who} may not take a snapshot of etcd; {_SNAPSHOT_NEEDS}.")
