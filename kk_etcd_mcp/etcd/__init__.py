"""The etcd adapter: the only package that imports etcd3aio (and grpc for etcd).

Other packages import what they use from here, not from the modules. Not exported: ``shared`` and
``keeper`` (the shared embedded etcd), which need POSIX file locks and are imported only when asked for,
and ``transport``, the adapter's own plumbing.

Every name is imported from its module on first use (``lazy.py``): the command line's ``--help`` reads
the settings, which parse endpoints, without loading etcd3aio and grpc.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .auth import AuthState, EtcdAuth, KeyPermission, PermissionKind, already_exists, describe_range
    from .client import EtcdClient, as_bytes, prefix_end
    from .election import Election, current_leader
    from .embedded import EmbeddedEtcd, EmbeddedEtcdError, default_data_dir, etcd_binary
    from .endpoint import parse_endpoint
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

# The modules of the names above, for the import on first use.
__getattr__ = lazy_exports(
    __name__,
    {
        ".auth": ("AuthState", "EtcdAuth", "KeyPermission", "PermissionKind", "already_exists", "describe_range"),
        ".client": ("EtcdClient", "as_bytes", "prefix_end"),
        ".endpoint": ("parse_endpoint",),
        ".election": ("Election", "current_leader"),
        ".embedded": ("EmbeddedEtcd", "EmbeddedEtcdError", "default_data_dir", "etcd_binary"),
        ".listwatch": ("RangeUpdate", "Snapshot", "list_and_watch"),
        ".maintenance": ("Alarm", "EtcdMaintenance", "Member", "MemberStatus", "SnapshotSummary"),
        ".session": ("LeaseSession",),
        ".types": (
            "Compare", "Delete", "DeleteResult", "Endpoint", "Get", "KeyValue", "Put", "PutResult", "RangePage",
            "TxnOp", "TxnResult", "WatchBatch", "WatchEvent",
        ),
    },
)  # fmt: skip

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
