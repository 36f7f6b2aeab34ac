"""``kk-etcd-mcp serve``, the composition root: embedded etcd (if asked), the etcd client, the registry
and its hub, the MCP server and its transport.

An HTTP transport's port is bound before anything starts (a taken port is one line, at once). Then
everything runs until a signal (``signals.py``); SIGINT/SIGTERM stop the transport, then the client is
closed and the server leaves the embedded etcd (which stops when no other server uses it), in reverse order.
What the start-up logs say is true when said: "serving" after the bind, "connected" after etcd answered.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ..errors import AuthenticationFailedError, KkEtcdError, PermissionDeniedError, StartupError
from ..etcd import Endpoint, EtcdClient, EtcdMaintenance, parse_endpoint
from ..mcp_server.app import build_server
from ..mcp_server.live import LiveUpdates
from ..mcp_server.stdio import run_stdio
from ..metrics import serve_metrics
from ..registry import HubRunner, RegistryKeys, RegistryService
from ..registry.checkers import Prober
from ..registry.hub import Transition
from ..registry.live_status import HubLiveStatus
from ..settings import Settings, is_loopback
from .signals import run_until_signal

if TYPE_CHECKING:
    from ..etcd.shared import SharedEtcd

log = logging.getLogger(__name__)


@asynccontextmanager
async def embedded_etcd(settings: Settings) -> AsyncIterator[SharedEtcd | None]:
    """Use (or start) the data dir's shared embedded etcd when the first endpoint is plain loopback.

    Every server on the same data dir shares one etcd, run by a keeper process while any of them runs
    (see etcd/keeper.py). When no keeper runs and something already listens on the endpoint, it is used
    only if it answers as etcd.
    """
    endpoint = parse_endpoint(settings.endpoints[0])
    if not is_loopback(endpoint.host) or endpoint.tls:
        log.warning("embedded etcd is only started for a plain loopback endpoint, not %s", endpoint.url)
        yield None
        return
    from ..etcd import default_data_dir  # the embedded etcd's modules (ctypes, ...): only when asked for
    from ..etcd.shared import join_shared_etcd  # file locks: POSIX only, so imported only when asked for

    data_dir = settings.data_dir or default_data_dir()
    with anyio.CancelScope(shield=True):  # a joined etcd must reach the finally below, even on a signal
        shared = await anyio.to_thread.run_sync(
            join_shared_etcd, data_dir, endpoint.host, endpoint.port, settings.peer_port
        )
    if shared is None:
        await _use_etcd_already_there(settings, endpoint)
        yield None
        return
    url, pid = shared.info.client_url, shared.info.etcd_pid
    if shared.started:
        log.info(
            "started the embedded etcd at %s (pid %d); data in %s, its log in %s; it runs while any "
            "kk-etcd-mcp server uses it",
            url, pid, data_dir, shared.files.log,
        )  # fmt: skip
    else:
        log.info("using the embedded etcd at %s (pid %d) that another kk-etcd-mcp server started", url, pid)
    try:
        yield shared
    finally:
        with anyio.CancelScope(shield=True):  # runs during cancellation too
            left = await anyio.to_thread.run_sync(shared.close)
        if left == "stopped":
            log.info("stopped the embedded etcd (data kept in %s)", data_dir)
        elif left == "shared":
            log.info("left the embedded etcd at %s running: other kk-etcd-mcp servers use it", url)
        else:
            log.info("the embedded etcd at %s is stopping (its keeper, pid %d, stops it)", url, shared.info.keeper_pid)


async def _use_etcd_already_there(settings: Settings, endpoint: Endpoint) -> None:
    """Something listens on the endpoint and no keeper of ours runs it: use it only if it is etcd, and say so."""
    from ..etcd import default_data_dir
    from ..etcd.keeper import KeeperFiles, running_keeper
    from ..holders import port_holder

    holder = await anyio.to_thread.run_sync(port_holder, endpoint.port)
    who = f" ({holder.describe()})" if holder else ""
    other_data_dir = holder.option("--data-dir") if holder else None
    if holder is not None and other_data_dir and Path(other_data_dir) != (settings.data_dir or default_data_dir()):
        keeper = await anyio.to_thread.run_sync(running_keeper, KeeperFiles(Path(other_data_dir)))
        if keeper is not None and keeper.etcd_pid == holder.pid:
            raise StartupError(
                f"{endpoint.url} is the embedded etcd of data dir {other_data_dir} (pid {holder.pid}), which other "
                f"kk-etcd-mcp servers share: set data_dir to {other_data_dir} to share it too, or give this server's "
                "embedded etcd another port in endpoints."
            )
    try:
        async with settings.etcd_client() as probe:
            version = f"etcd {(await EtcdMaintenance(probe).status()).version}"
    except (AuthenticationFailedError, PermissionDeniedError):
        version = "etcd"  # it refused our credentials, so it is etcd; the start-up check below says more
    except KkEtcdError as error:
        raise StartupError(
            f"embedded etcd: something that is not etcd listens on {endpoint.url}{who}; it does not answer etcd's "
            f"Status call ({error}). Stop it, or give the embedded etcd a free port in endpoints "
            "(e.g. KK_ETCD_ENDPOINTS=http://127.0.0.1:23790)."
        ) from None
    log.info(
        "%s already answers at %s%s; using it as it is: this server did not start it and will not stop it",
        version, endpoint.url, who,
    )  # fmt: skip


async def report_etcd_connection(etcd: EtcdClient) -> None:
    """Say once, at start, whether etcd answers (the server runs either way; tools recover when it does)."""
    try:
        status = await EtcdMaintenance(etcd).status()
    except KkEtcdError as error:
        log.warning("%s; the server runs anyway, and its tools work as soon as etcd answers", error)
    else:
        log.info("connected to etcd %s at %s", status.version, etcd.endpoints)


@asynccontextmanager
async def registry_service(
    settings: Settings, etcd: EtcdClient, on_transition: Transition | None = None
) -> AsyncIterator[RegistryService]:
    """The registry tools' service, and the hub in the background when ``hub`` is on."""
    keys = RegistryKeys(settings.registry_prefix)
    runner = (
        HubRunner(
            etcd,
            keys,
            lease_ttl=settings.hub_lease_ttl,
            on_transition=on_transition,
            mode=settings.hub_mode,
            weight=settings.hub_weight,
        )
        if settings.hub
        else None
    )
    async with Prober() as prober, anyio.create_task_group() as hub_tg:
        if runner is not None:
            await hub_tg.start(runner.run)
        try:
            yield RegistryService(etcd, keys, prober, HubLiveStatus(runner) if runner is not None else None)
        finally:
            hub_tg.cancel_scope.cancel()


def resume_collector() -> None:
    """Collect garbage as usual from here on, when ``cli.main`` paused the collector for the start-up.

    What the start-up made (modules, pydantic schemas, the tools) is frozen first: it lives as long as the
    process, so collections never walk it again (the hub, when it runs, unfreezes and freezes as it needs).
    Without the pause (the server run inside another program) nothing is changed.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


async def serve(settings: Settings) -> None:
    """Serve until a signal. A start-up failure (etcd data dir, port in use, ...) is raised as itself."""
    sessions_left = await _serve(settings)
    if sessions_left:
        # Everything of ours is closed by now (hub resigned, etcd closed, audit flushed). What is left
        # are mcp's HTTP sessions: ending them one by one takes anyio time that grows faster than their
        # number (seconds for thousands), and they hold nothing but memory. Exit without it.
        logging.shutdown()
        os._exit(0)


async def _serve(settings: Settings) -> bool:
    """Serve until a signal; True when HTTP sessions were left open for the process exit to end (see ``serve``)."""
    # The HTTP port is taken first: a busy one fails at once, before etcd is started or joined.
    listener = None
    if settings.transport != "stdio":
        from ..mcp_server.http import bind_http_socket  # uvicorn and the middleware: not needed on stdio

        listener = bind_http_socket(settings)
    try:
        return await _serve_on(settings, listener)
    finally:
        if listener is not None:
            listener.close()


async def _serve_on(settings: Settings, listener: socket.socket | None) -> bool:
    sessions_left = False
    # A SIGTERM during start-up still leaves the embedded etcd properly instead of leaving it running.
    async with run_until_signal() as running, AsyncExitStack() as stack:
        if settings.embedded_etcd:
            await stack.enter_async_context(embedded_etcd(settings))
        etcd = await stack.enter_async_context(settings.etcd_client())
        if settings.metrics_port is not None:
            stack.enter_context(serve_metrics(settings.metrics_host, settings.metrics_port))
            log.info("serving metrics at http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
        live = LiveUpdates(etcd)  # resource subscriptions and the hub's transitions as MCP log messages
        registry = await stack.enter_async_context(registry_service(settings, etcd, live.hub_transition))
        server = build_server(settings, etcd, registry, live)
        resume_collector()
        await stack.enter_async_context(live.run())
        running.tasks.start_soon(report_etcd_connection, etcd)
        toolsets = ", ".join(settings.toolsets)
        if listener is None:
            log.info("serving MCP over stdio (toolsets: %s; etcd at %s)", toolsets, etcd.endpoints)
            await run_stdio(server)
        else:
            from ..mcp_server.http import make_http_server

            http = make_http_server(server, settings)
            running.on_signal = http.stop  # let uvicorn finish open requests, then return
            await http.serve(sockets=[listener])
            sessions_left = True
    return sessions_left
