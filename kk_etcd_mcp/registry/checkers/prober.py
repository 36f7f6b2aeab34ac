"""The resources probes share: one aiohttp session, TLS contexts, one gRPC channel per instance.

``Prober.check`` never raises for a failing target: every failure is a critical ``CheckResult``.
Cancellation still propagates, and so does ``RuntimeError`` for a check on a closed prober.
"""

from __future__ import annotations

import logging
import ssl
import time
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio

from ..model import CheckSpec
from .grpc import open_channel, probe_grpc
from .grpc_lean import grpc_tls_context
from .health_channel import HealthChannel
from .result import CheckResult, cap_output, error_reason
from .tcp import probe_tcp

if TYPE_CHECKING:
    import aiohttp

logger = logging.getLogger(__name__)

USER_AGENT = "kk-etcd-mcp health check"


class Prober:
    """Runs checks for many instances; use ``async with Prober() as prober`` or call ``aclose()``.

    ``limit_per_host`` caps concurrent HTTP connections per host:port (instances sharing one are
    queued, and the wait counts against their timeout); there is no overall cap, since each
    instance has at most one check in flight. ``keepalive_timeout`` should exceed the usual
    check interval, or every check opens a new connection.
    """

    def __init__(self, *, limit_per_host: int = 100, keepalive_timeout: float = 60.0) -> None:
        self._limit_per_host = limit_per_host
        self._keepalive_timeout = keepalive_timeout
        self._session: aiohttp.ClientSession | None = None
        self._tls: dict[str, ssl.SSLContext] = {}  # by CA file; thousands of instances share a few
        self._grpc_tls: dict[str | None, ssl.SSLContext] = {}  # the same for gRPC (ALPN h2), None: system roots
        self._channels: dict[str, tuple[tuple[object, ...], HealthChannel]] = {}  # instance id -> (key, channel)
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def check(self, instance_id: str, spec: CheckSpec) -> CheckResult:
        """Probe ``spec`` now, for the instance ``instance_id`` (whose gRPC channel is reused)."""
        if self._closed:
            raise RuntimeError("prober is closed")
        start = time.perf_counter()
        try:
            match spec.type:
                case "http":
                    return await self._probe_http(spec)
                case "grpc":
                    try:
                        channel = await self._channel(instance_id, spec)
                    except OSError as exc:
                        output = f"gRPC check {spec.addr}: cannot read CA file {spec.ca_file}: {error_reason(exc)}"
                        return CheckResult("critical", output, time.perf_counter() - start)
                    return await probe_grpc(spec, channel)
                case "tcp":
                    return await probe_tcp(spec)
        except Exception as exc:
            # The probes map every target failure themselves; this is a bug in them, and it must
            # not end the instance's check loop. Logged with its traceback, reported as critical.
            logger.exception("check of %s failed unexpectedly", instance_id)
            output = cap_output(f"check failed unexpectedly: {type(exc).__name__}: {exc}", 512)
            return CheckResult("critical", output, time.perf_counter() - start)

    async def forget(self, instance_id: str) -> None:
        """Close the instance's gRPC channel (if any); call when its registration is gone."""
        channel = self.detach(instance_id)
        if channel is not None:
            await close_channel(channel)

    def detach(self, instance_id: str) -> HealthChannel | None:
        """Take the instance's gRPC channel out at once (a new check opens a fresh one); the caller closes it."""
        entry = self._channels.pop(instance_id, None)
        return entry[1] if entry is not None else None

    async def retain(self, instance_ids: set[str]) -> None:
        """Close the channels of every instance not in ``instance_ids`` (those gone while nobody watched)."""
        for instance_id in [i for i in self._channels if i not in instance_ids]:
            await self.forget(instance_id)

    async def aclose(self) -> None:
        """Close the HTTP session and every channel; later checks raise RuntimeError."""
        self._closed = True
        channels = [channel for _, channel in self._channels.values()]
        self._channels.clear()
        session, self._session = self._session, None
        with anyio.CancelScope(shield=True):
            for channel in channels:
                await close_channel(channel)
            if session is not None:
                await session.close()

    async def _probe_http(self, spec: CheckSpec) -> CheckResult:
        # aiohttp (a quarter of a second to import) comes with the first HTTP check, not with the hub:
        # a server whose registry has no HTTP instance starts without it.
        from .http import probe_http

        return await probe_http(spec, self._http_session(), ssl_context=await self._tls_context(spec))

    def _http_session(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds a session to the loop running when it is made.
        if self._session is None:
            import aiohttp

            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=self._limit_per_host, keepalive_timeout=self._keepalive_timeout
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # checks are stateless; a jar only costs CPU
                timeout=aiohttp.ClientTimeout(),  # no aiohttp limits: probe_http bounds each request
                # identity: a compressed body would make the 4 KB read cost a decompression
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
        return self._session

    async def _tls_context(self, spec: CheckSpec) -> ssl.SSLContext | None:
        if spec.ca_file is None:
            return None
        context = self._tls.get(spec.ca_file)
        if context is None:
            from .http import tls_context

            try:
                context = self._tls[spec.ca_file] = await tls_context(spec.ca_file)
            except (OSError, ssl.SSLError):
                return None  # probe_http tries again and reports why
        return context

    async def _grpc_tls_context(self, spec: CheckSpec) -> ssl.SSLContext | None:
        if not spec.tls:
            return None
        context = self._grpc_tls.get(spec.ca_file)
        if context is None:
            context = self._grpc_tls[spec.ca_file] = await grpc_tls_context(spec.ca_file)
        return context

    async def _channel(self, instance_id: str, spec: CheckSpec) -> HealthChannel:
        # Only what shapes the connection; a new timeout or service name reuses the channel.
        key = (spec.addr, spec.tls, spec.ca_file, spec.interval)
        entry = self._channels.get(instance_id)
        if entry is not None and entry[0] == key:
            return entry[1]
        channel = await open_channel(spec, await self._grpc_tls_context(spec))
        # Reading a CA file lets other tasks run: a check of the same instance may have opened a channel
        # meanwhile, or the prober may have been closed.
        entry = self._channels.get(instance_id)
        if self._closed:
            await close_channel(channel)
            raise RuntimeError("prober is closed")
        if entry is not None and entry[0] == key:
            await close_channel(channel)
            return entry[1]
        self._channels[instance_id] = (key, channel)
        if entry is not None:
            await close_channel(entry[1])
        return channel


async def close_channel(channel: HealthChannel) -> None:
    with anyio.CancelScope(shield=True):  # a channel left open keeps its connection until GC
        await channel.close()
