"""Cluster administration: status of etcd's members and snapshots of its database into backup_dir."""

from .files import default_backup_dir
from .models import ClusterAlarm, ClusterMember, ClusterStatus, MemberStatus, SnapshotResult
from .names import snapshot_file_name
from .service import ClusterService

__all__ = [
    "ClusterAlarm",
    "ClusterMember",
    "ClusterService",
    "ClusterStatus",
    "MemberStatus",
    "SnapshotResult",
    "default_backup_dir",
    "snapshot_file_name",
]
