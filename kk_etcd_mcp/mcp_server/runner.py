"""``kk-etcd-mcp serve``: embedded etcd (if asked), the etcd client, the MCP server and its transport.

Everything runs in one task group; SIGINT/SIGTERM stop the transport, then the client and the
embedded etcd are closed in reverse order.
"""

import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import anyio

from ..errors import leaf_exceptions
from ..etcd import EtcdClient
from ..etcd.connection import parse_endpoint
from ..etcd.embedded import EmbeddedEtcd, accepts_connections, default_data_dir
from ..registry import HubRunner, RegistryKeys, RegistryService
from ..registry.checkers import Prober
from ..registry.hub import Transition
from ..settings import Settings, is_loopback
from .app import build_server
from .http import make_http_server
from .live import LiveUpdates
from .stdio import run_stdio

log = logging.getLogger(__name__)


@asynccontextmanager
async def embedded_etcd(settings: Settings) -> AsyncIterator[EmbeddedEtcd | None]:
    """Start etcd as a child process when the first endpoint is loopback and nothing answers there."""
    endpoint = parse_endpoint(settings.endpoints[0])
    if not is_loopback(endpoint.host) or endpoint.tls:
        log.warning("embedded etcd is only started for a plain loopback endpoint, not %s", endpoint.url)
        yield None
        return
    if await anyio.to_thread.run_sync(accepts_connections, endpoint.host, endpoint.port):
        log.info("etcd already answers at %s; not starting an embedded one", endpoint.url)
        yield None
        return
    data_dir = settings.data_dir or default_data_dir()
    log_file = data_dir.with_name(data_dir.name + ".log")
    etcd = EmbeddedEtcd(
        data_dir,
        client_port=endpoint.port,
        peer_port=settings.peer_port,
        host=endpoint.host,
        log_file=log_file,
    )
    log.info("starting embedded etcd at %s; data in %s, its log in %s", etcd.client_url, data_dir, log_file)
    await etcd.astart()
    try:
        yield etcd
    finally:
        log.info("stopping embedded etcd (data kept in %s)", data_dir)
        with anyio.CancelScope(shield=True):  # runs during cancellation too
            await etcd.astop()


@asynccontextmanager
async def registry_service(
    settings: Settings, etcd: EtcdClient, on_transition: Transition | None = None
) -> AsyncIterator[RegistryService]:
    """The registry tools' service, and the hub in the background when ``hub`` is on."""
    keys = RegistryKeys(settings.registry_prefix)
    runner = (
        HubRunner(etcd, keys, lease_ttl=settings.hub_lease_ttl, on_transition=on_transition) if settings.hub else None
    )
    async with Prober() as prober, anyio.create_task_group() as hub_tg:
        if runner is not None:
            await hub_tg.start(runner.run)
        try:
            yield RegistryService(etcd, keys, prober, runner)
        finally:
            hub_tg.cancel_scope.cancel()


async def serve(settings: Settings) -> None:
    try:
        await _serve(settings)
    except BaseExceptionGroup as group:
        # A start-up failure (etcd data dir, port in use, ...) surfaces wrapped by the task group;
        # hand the caller the error itself so it is reported as one clear line.
        leaves = leaf_exceptions(group)
        if len(leaves) == 1 and isinstance(leaves[0], Exception):
            raise leaves[0] from None
        raise


async def _serve(settings: Settings) -> None:
    # Signals are caught before anything starts, so a SIGTERM during start-up still stops the
    # embedded etcd instead of leaving it running.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            stop: Callable[[], None] = tg.cancel_scope.cancel

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("received %s; shutting down", signal.Signals(signum).name)
                    stop()

            tg.start_soon(stop_on_signal)
            async with AsyncExitStack() as stack:
                if settings.embedded_etcd:
                    await stack.enter_async_context(embedded_etcd(settings))
                etcd = await stack.enter_async_context(settings.etcd_client())
                live = LiveUpdates(etcd)  # resource subscriptions and the hub's transitions as MCP log messages
                registry = await stack.enter_async_context(registry_service(settings, etcd, live.hub_transition))
                server = build_server(settings, etcd, registry, live)
                await stack.enter_async_context(live.run())
                toolsets = ", ".join(settings.toolsets)
                log.info("kk-etcd-mcp connected to etcd at %s (toolsets: %s)", etcd.endpoints, toolsets)
                if settings.transport == "stdio":
                    await run_stdio(server)
                else:
                    http = make_http_server(server, settings)
                    stop = http.stop  # let uvicorn finish open requests, then return
                    await http.serve()
            tg.cancel_scope.cancel()
