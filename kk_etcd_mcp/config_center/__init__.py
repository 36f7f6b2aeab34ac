"""The configuration center: typed values, compare-and-swap writes, history, rollback, export/import, and
the SDK's ConfigClient (typed get/put, live values)."""

from .client import ConfigClient, Versioned
from .formats import ValueFormat
from .keys import KeyPolicy, ReservedPrefix
from .live import LiveConfig, LiveConfigMap
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
    "ConfigClient",
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
    "LiveConfig",
    "LiveConfigMap",
    "ReservedPrefix",
    "ValueFormat",
    "Versioned",
]
