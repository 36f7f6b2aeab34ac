"""Health probes (HTTP, gRPC, TCP) and the ``Prober`` that owns their shared clients.

A probe is one check, nothing more: ``async def probe(spec, client) -> CheckResult``. Scheduling,
thresholds and status transitions belong to the hub's loop and state machine.

``probe_http`` is imported on first use (``lazy.py``): it brings aiohttp, which a server without HTTP
checks never needs.
"""

from typing import TYPE_CHECKING

from ...lazy import lazy_exports
from .grpc import probe_grpc
from .prober import Prober
from .result import CheckResult
from .tcp import probe_tcp

if TYPE_CHECKING:
    from .http import probe_http

__getattr__ = lazy_exports(__name__, {".http": ("probe_http",)})

__all__ = ["CheckResult", "Prober", "probe_grpc", "probe_http", "probe_tcp"]
