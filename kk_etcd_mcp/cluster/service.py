"""ClusterService: the cluster's status and snapshots of its database into backup_dir."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from ..errors import KkEtcdError
from ..etcd import EtcdClient, EtcdMaintenance, Member
from ..etcd import MemberStatus as EtcdMemberStatus
from .files import AtomicFile, default_backup_dir, ensure_directory, refuse_existing
from .models import ClusterAlarm, ClusterMember, ClusterStatus, MemberStatus, SnapshotResult, hex_id
from .names import snapshot_file_name

Progress = Callable[[int, int], Awaitable[None]]  # (bytes received, bytes expected)

# Progress is reported at most this many times per snapshot (plus the end), however large it is.
PROGRESS_STEPS = 50


def _member_status(status: EtcdMemberStatus) -> MemberStatus:
    return MemberStatus(
        version=status.version,
        db_size=status.db_size,
        db_size_in_use=status.db_size_in_use,
        revision=status.revision,
        raft_term=status.raft_term,
        raft_index=status.raft_index,
        raft_applied_index=status.raft_applied_index,
        errors=status.errors,
    )


class _Throttled:
    """Passes on progress when it grew by a PROGRESS_STEPS-th of the total, and at the end."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._reported = -1

    async def __call__(self, received: int, total: int) -> None:
        if received >= total or received - self._reported >= total / PROGRESS_STEPS or self._reported < 0:
            self._reported = received
            await self._progress(received, total)


class ClusterService:
    def __init__(self, etcd: EtcdClient, backup_dir: Path | None = None) -> None:
        self.etcd = etcd
        self.maintenance = EtcdMaintenance(etcd)
        self.backup_dir = (backup_dir or default_backup_dir()).expanduser().absolute()

    async def status(self) -> ClusterStatus:
        """Members, leader, version, sizes, revision, raft term and alarms; every member is asked
        for its own status at its client URLs, all at once, each within the request timeout."""
        here = await self.maintenance.status()
        members = await self.maintenance.members()
        own: dict[int, MemberStatus | str] = {}
        alarms: list[ClusterAlarm] | str = []
        async with anyio.create_task_group() as tg:
            for member in members:
                tg.start_soon(self._ask_member, member, own)
            alarms = await self._alarms()
        return ClusterStatus(
            cluster_id=hex_id(here.cluster_id),
            endpoint_member_id=hex_id(here.member_id),
            leader_id=hex_id(here.leader) if here.leader else None,
            version=here.version,
            db_size=here.db_size,
            db_size_in_use=here.db_size_in_use,
            revision=here.revision,
            raft_term=here.raft_term,
            raft_index=here.raft_index,
            members=[_cluster_member(m, here.leader, own[m.id]) for m in members],
            alarms=alarms if isinstance(alarms, list) else [],
            alarms_error=alarms if isinstance(alarms, str) else None,
            errors=here.errors,
        )

    async def _alarms(self) -> list[ClusterAlarm] | str:
        """The alarms, or why they could not be read: etcd reads them through raft, so without a
        leader this fails while everything else in the status still answers."""
        try:
            alarms = await self.maintenance.alarms()
        except KkEtcdError as error:
            return str(error)
        return [ClusterAlarm(member_id=hex_id(a.member_id), alarm=a.kind) for a in alarms]

    async def _ask_member(self, member: Member, into: dict[int, MemberStatus | str]) -> None:
        """The member's own status from the first of its client URLs that answers, else why not."""
        if not member.client_urls:
            into[member.id] = "the member has no client URL (it has not started yet)"
            return
        problems = []
        for url in member.client_urls:
            try:
                into[member.id] = _member_status(await self.maintenance.member_status(url))
                return
            except KkEtcdError as error:
                problems.append(str(error))
        into[member.id] = "; ".join(problems)

    async def snapshot(
        self, name: str | None = None, progress: Progress | None = None, dry_run: bool = False
    ) -> SnapshotResult:
        """Stream a snapshot of etcd's database into ``backup_dir/<name>``; never overwrites a file.

        The file appears only when complete and checked against etcd's digest; on any failure or
        cancellation nothing is left behind. See ``names`` for what a name may be. ``dry_run`` checks
        the name and says where the file would go, writing nothing.
        """
        file_name = snapshot_file_name(name)
        target = self.backup_dir / file_name
        await refuse_existing(target)
        change = f"save a snapshot of etcd's whole database as {target}"
        if dry_run:  # nothing is asked of etcd: that needs role root, and the snapshot itself says so
            return SnapshotResult(
                path=str(target),
                name=file_name,
                size=0,
                sha256="",
                revision=0,
                revision_exact=False,
                revision_after=0,
                took_seconds=0.0,
                restore_hint=restore_hint(target, ""),
                dry_run=True,
                change=change,
            )
        await ensure_directory(self.backup_dir)
        started = time.monotonic()
        async with AtomicFile(target) as out:
            summary = await self.maintenance.snapshot(out.write, _Throttled(progress) if progress else None)
            await out.commit()
        return SnapshotResult(
            path=str(target),
            name=file_name,
            size=summary.size,
            sha256=summary.sha256,
            revision=summary.revision,
            revision_exact=summary.revision_exact,
            revision_after=summary.revision_after,
            took_seconds=round(time.monotonic() - started, 3),
            restore_hint=restore_hint(target, summary.server_version),
            change=change,
        )


def restore_hint(target: Path, server_version: str) -> str:
    """How to restore ``target``; ``server_version`` "" when etcd was not asked (a dry run)."""
    return (
        f"{restore_command(server_version)} {target} --data-dir <new empty dir> (plus --name and --initial-* "
        "flags per member), then start etcd with that data dir"
    )


def restore_command(server_version: str) -> str:
    """etcd 3.5 moved snapshot restore from etcdctl into etcdutl; 3.4 has only ``etcdctl snapshot restore``."""
    try:
        major, minor = (int(part) for part in server_version.split(".")[:2])
    except ValueError:  # not a version we can read: name the tool of current etcd
        return "etcdutl snapshot restore"
    return "etcdctl snapshot restore" if (major, minor) < (3, 5) else "etcdutl snapshot restore"


def _cluster_member(member: Member, leader: int, own: MemberStatus | str) -> ClusterMember:
    return ClusterMember(
        id=hex_id(member.id),
        name=member.name,
        peer_urls=member.peer_urls,
        client_urls=member.client_urls,
        is_leader=member.id == leader,
        is_learner=member.is_learner,
        status=own if isinstance(own, MemberStatus) else None,
        status_error=own if isinstance(own, str) else None,
    )
