"""The etcd adapter: the only package that imports etcd3aio (and grpc for etcd).

Other packages import what they use from here, not from the modules. Not exported: ``shared`` and
``keeper`` (the shared embedded etcd), which need POSIX file locks and are imported only when asked for,
and ``transport``, the adapter's own plumbing.
"""

from .auth import AuthState, EtcdAuth, KeyPermission, PermissionKind, already_exists, describe_range
from .client import EtcdClient, as_bytes, prefix_end
from .connection import parse_endpoint
from .election import Election, current_leader
from .embedded import EmbeddedEtcd, EmbeddedEtcdError, default_data_dir, etcd_binary
from .listwatch import RangeUpdate, Snapshot, list_and_watch
from .maintenance import Alarm, EtcdMaintenance, Member, MemberStatus, SnapshotSummary
from .session import LeaseSession
from .types import (
    Compare,
    Delete,
    DeleteResult,
    Endpoint,
    Get,
    KeyValue,
    Put,
    PutResult,
    RangePage,
    TxnOp,
    TxnResult,
    WatchBatch,
    WatchEvent,
)

__all__ = [
    "Alarm",
    "AuthState",
    "Compare",
    "Delete",
    "DeleteResult",
    "Election",
    "EmbeddedEtcd",
    "EmbeddedEtcdError",
    "Endpoint",
    "EtcdAuth",
    "EtcdClient",
    "EtcdMaintenance",
    "Get",
    "KeyPermission",
    "KeyValue",
    "LeaseSession",
    "Member",
    "MemberStatus",
    "PermissionKind",
    "Put",
    "PutResult",
    "RangePage",
    "RangeUpdate",
    "Snapshot",
    "SnapshotSummary",
    "TxnOp",
    "TxnResult",
    "WatchBatch",
    "WatchEvent",
    "already_exists",
    "as_bytes",
    "current_leader",
    "default_data_dir",
    "describe_range",
    "etcd_binary",
    "list_and_watch",
    "parse_endpoint",
    "prefix_end",
]
