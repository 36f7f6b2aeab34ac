"""The configuration center: typed values, compare-and-swap writes, history, rollback, export/import."""

from .formats import ValueFormat
from .keys import KeyPolicy, ReservedPrefix
from .models import (
    ExportDocument,
    ExportItem,
    ImportPlan,
    ImportResult,
    KvDeleteResult,
    KvEntry,
    KvHistoryResult,
    KvListItem,
    KvListResult,
    KvPutResult,
    KvRollbackResult,
    KvVersion,
)
from .service import ConfigCenter

__all__ = [
    "ConfigCenter",
    "ExportDocument",
    "ExportItem",
    "ImportPlan",
    "ImportResult",
    "KeyPolicy",
    "KvDeleteResult",
    "KvEntry",
    "KvHistoryResult",
    "KvListItem",
    "KvListResult",
    "KvPutResult",
    "KvRollbackResult",
    "KvVersion",
    "ReservedPrefix",
    "ValueFormat",
]
