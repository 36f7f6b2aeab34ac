"""Results of the cluster toolset: the shared language of core, MCP tools and callers.

Member and cluster ids are written in hex, as etcdctl prints them: as JSON numbers these 64-bit
values would lose digits in any client that reads numbers as doubles.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..change import Change


def hex_id(value: int) -> str:
    return f"{value:x}"


class MemberStatus(BaseModel):
    """What one member says about itself, asked at its own client URL."""

    version: str = Field(description="etcd version of this member.")
    db_size: int = Field(description="Bytes of this member's database file.")
    db_size_in_use: int = Field(description="Bytes of it in use; the rest is freed by a defragment.")
    revision: int = Field(description="Store revision this member has applied.")
    raft_term: int
    raft_index: int
    raft_applied_index: int
    errors: list[str] = Field(description="Errors the member reports about itself (empty when healthy).")


class ClusterMember(BaseModel):
    id: str = Field(description="Member id in hex, as etcdctl prints it.")
    name: str = Field(description="Member name; empty while a newly added member has not started.")
    peer_urls: list[str]
    client_urls: list[str]
    is_leader: bool
    is_learner: bool = Field(description="A learner replicates but does not vote.")
    status: MemberStatus | None = Field(description="This member's own status; null when it could not be asked.")
    status_error: str | None = Field(description="Why `status` is null: the member did not answer at its client URLs.")


class ClusterAlarm(BaseModel):
    member_id: str = Field(description="Member id in hex.")
    alarm: str = Field(
        description="NOSPACE: the database quota is full and etcd refuses writes until compaction, defragment "
        "and disarm. CORRUPT: members disagree about the data."
    )


class ClusterStatus(BaseModel):
    """The cluster as the member reached through the configured endpoints sees it."""

    cluster_id: str = Field(description="Cluster id in hex.")
    endpoint_member_id: str = Field(description="Id of the member that answered (through the configured endpoints).")
    leader_id: str | None = Field(description="Id of the raft leader; null when the cluster has no leader (no quorum).")
    version: str = Field(description="etcd version of the member that answered.")
    db_size: int = Field(description="Bytes of the answering member's database file.")
    db_size_in_use: int = Field(description="Bytes of it in use; the rest is reclaimed by a defragment.")
    revision: int = Field(description="Current store revision.")
    raft_term: int
    raft_index: int
    members: list[ClusterMember]
    alarms: list[ClusterAlarm] = Field(description="Active alarms; empty when none (or when alarms_error is set).")
    alarms_error: str | None = Field(
        default=None, description="Why the alarms could not be read (etcd needs a leader to list them)."
    )
    errors: list[str] = Field(description="Errors the answering member reports (empty when healthy).")


class SnapshotResult(Change):
    path: str = Field(description="Absolute path of the snapshot file, inside the configured backup_dir.")
    name: str = Field(description="File name of the snapshot inside backup_dir.")
    size: int = Field(description="Bytes in the file (with dry_run: 0).")
    sha256: str = Field(description="SHA-256 of the file, hex (with dry_run: '').")
    revision: int = Field(
        description="Store revision the snapshot holds (exact when revision_exact; else the lowest it can be; "
        "with dry_run: 0)."
    )
    revision_exact: bool = Field(
        description="False only when a write reached etcd in the instant the snapshot was taken; the snapshot "
        "then holds a revision between `revision` and `revision_after`."
    )
    revision_after: int = Field(description="Store revision right after etcd took the snapshot.")
    took_seconds: float = Field(description="Seconds from asking etcd to the file being in place.")
    restore_hint: str = Field(
        description="How to restore it into a new data directory (etcdutl snapshot restore; etcdctl snapshot "
        "restore on etcd 3.4), then start etcd on it."
    )
