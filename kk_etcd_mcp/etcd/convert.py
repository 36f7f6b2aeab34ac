"""Protobuf responses of etcd3aio to the adapter's plain types."""

from __future__ import annotations

from typing import Any

from .types import DeleteResult, KeyValue, PutResult, RangePage, TxnOpResult, TxnResult, WatchEvent

# mvccpb.Event.EventType: PUT = 0, DELETE = 1
_EVENT_DELETE = 1


def key_value(kv: Any) -> KeyValue:
    return KeyValue(
        key=bytes(kv.key),
        value=bytes(kv.value),
        create_revision=int(kv.create_revision),
        mod_revision=int(kv.mod_revision),
        version=int(kv.version),
        lease=int(kv.lease),
    )


def range_page(resp: Any) -> RangePage:
    return RangePage(
        kvs=[key_value(kv) for kv in resp.kvs],
        more=bool(resp.more),
        revision=int(resp.header.revision),
        count=int(resp.count),
    )


def delete_result(resp: Any) -> DeleteResult:
    return DeleteResult(
        revision=int(resp.header.revision),
        deleted=int(resp.deleted),
        prev=[key_value(kv) for kv in resp.prev_kvs],
    )


def put_result(resp: Any) -> PutResult:
    prev = key_value(resp.prev_kv) if resp.HasField("prev_kv") else None
    return PutResult(revision=int(resp.header.revision), prev=prev)


def txn_result(resp: Any) -> TxnResult:
    results: list[TxnOpResult] = []
    for op in resp.responses:
        kind = op.WhichOneof("response")
        if kind == "response_put":
            results.append(put_result(op.response_put))
        elif kind == "response_delete_range":
            results.append(delete_result(op.response_delete_range))
        elif kind == "response_range":
            results.append(range_page(op.response_range))
    return TxnResult(succeeded=bool(resp.succeeded), revision=int(resp.header.revision), results=results)


def watch_event(ev: Any) -> WatchEvent:
    prev = key_value(ev.prev_kv) if ev.HasField("prev_kv") else None
    return WatchEvent(type="delete" if ev.type == _EVENT_DELETE else "put", kv=key_value(ev.kv), prev=prev)
