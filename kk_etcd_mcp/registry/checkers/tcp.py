"""TCP probe: connect within the timeout, then close; a completed handshake is passing."""

from __future__ import annotations

import asyncio
import time

from ..model import CheckSpec, Status
from .result import CheckResult, os_error_reason


def split_host_port(addr: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` to (host, port); ValueError when it is neither."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host:
        raise ValueError(f"address {addr!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


async def probe_tcp(spec: CheckSpec) -> CheckResult:
    start = time.perf_counter()
    label = f"TCP connect {spec.addr}"

    def result(status: Status, output: str) -> CheckResult:
        return CheckResult(status, output, time.perf_counter() - start)

    try:
        host, port = split_host_port(spec.addr)
    except ValueError as exc:
        return result("critical", f"{label}: {exc}")
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(spec.timeout):
            transport, _ = await loop.create_connection(asyncio.Protocol, host, port)
    except TimeoutError:
        return result("critical", f"{label}: timed out after {spec.timeout:g}s")
    except OSError as exc:
        return result("critical", f"{label}: {os_error_reason(exc)}")
    transport.close()
    return result("passing", f"{label}: success")
