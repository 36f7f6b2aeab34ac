"""The configuration center: typed values, compare-and-swap writes, history, rollback, export/import, and
the SDK's ConfigClient (typed get/put, live values).

The SDK's names are imported on first use (``lazy.py``): the server never needs them.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
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

if TYPE_CHECKING:
    from .client import ConfigClient, Versioned
    from .live import LiveConfig, LiveConfigMap

__getattr__ = lazy_exports(
    __name__, {".client": ("ConfigClient", "Versioned"), ".live": ("LiveConfig", "LiveConfigMap")}
)

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
