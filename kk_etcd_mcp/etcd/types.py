"""Plain value types of the etcd adapter: what callers get back instead of protobuf messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

CompareTarget = Literal["mod", "create", "version", "value"]
CompareOp = Literal["==", "!=", "<", ">"]


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class RangePage:
    """One page of a range read; ``revision`` is the store revision the page was read at."""

    kvs: list[KeyValue]
    more: bool
    revision: int
    count: int = 0


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: int
    deleted: int
    prev: list[KeyValue] = field(default_factory=list)


# Transaction building blocks -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compare:
    """``target(key) op value``; a missing key has mod/create revision and version 0. With ``range_end``,
    every key of ``[key, range_end)`` must pass (etcd 3.3 and later)."""

    key: bytes
    target: CompareTarget
    op: CompareOp
    value: int | bytes
    range_end: bytes | None = None


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0
    prev_kv: bool = False


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes
    range_end: bytes | None = None
    prev_kv: bool = False


@dataclass(frozen=True, slots=True)
class Get:
    key: bytes
    range_end: bytes | None = None


TxnOp = Put | Delete | Get
TxnOpResult = PutResult | DeleteResult | RangePage


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    results: list[TxnOpResult]


# Watch ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: Literal["put", "delete"]
    kv: KeyValue
    prev: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """Events that etcd delivered together; ``revision`` is the header revision of that response."""

    revision: int
    events: list[WatchEvent]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One etcd endpoint as configured (``http://host:port``), split for the channel."""

    url: str
    host: str
    port: int
    tls: bool

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
