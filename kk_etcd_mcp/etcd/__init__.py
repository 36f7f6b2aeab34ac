"""The etcd adapter: the only package that imports etcd3aio (and grpc for etcd)."""

from .client import EtcdClient, as_bytes, prefix_end
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
    "Compare",
    "Delete",
    "DeleteResult",
    "Endpoint",
    "EtcdClient",
    "Get",
    "KeyValue",
    "Put",
    "PutResult",
    "RangePage",
    "TxnOp",
    "TxnResult",
    "WatchBatch",
    "WatchEvent",
    "as_bytes",
    "prefix_end",
]
