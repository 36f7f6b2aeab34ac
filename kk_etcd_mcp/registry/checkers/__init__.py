"""Health probes (HTTP, gRPC, TCP) and the ``Prober`` that owns their shared clients.

A probe is one check, nothing more: ``async def probe(spec, client) -> CheckResult``. Scheduling,
thresholds and status transitions belong to the hub's loop and state machine.
"""

from .grpc import probe_grpc
from .http import probe_http
from .prober import Prober
from .result import CheckResult
from .tcp import probe_tcp

__all__ = ["CheckResult", "Prober", "probe_grpc", "probe_http", "probe_tcp"]
