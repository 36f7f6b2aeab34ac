"""Live updates for MCP clients: resource subscriptions fed by etcd watches, and the hub's transitions as logs.

Both protocol eras mcp 2.3 serves are covered:

- handshake era (2025-11-25 and before; what most clients speak): ``resources/subscribe`` /
  ``resources/unsubscribe`` and ``notifications/resources/updated``; ``logging/setLevel`` per client
  and ``notifications/message`` for every hub transition the client's level admits (logger
  ``kk-etcd-mcp.hub``: ``warning`` when an instance turns critical, ``info`` otherwise).
- 2026-07-28: a ``subscriptions/listen`` stream with ``resourceSubscriptions``; updates are published on
  the server's subscription bus. That era has no connection-wide log channel (log messages only ride a
  request's own response), so hub transitions reach these clients as updates of ``kk://services/<name>``.

Every watch and sender task lives in the task group of ``run()``, which ``serve`` holds for the server's
lifetime. A client's subscriptions and sender end with its connection; a listen stream's with the stream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    EmptyResult,
    LoggingLevel,
    SetLevelRequestParams,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ..errors import KkEtcdError
from ..etcd import EtcdClient
from ..registry import InstanceKey
from ..registry.model import HealthStatus
from .lowlevel import connection_of, lowlevel_server
from .notify import LOGGER, ConnectedClient
from .resources import resource_error
from .subscriptions import NotRunning, ResourceWatches, Subscriber, Target

HUB_LOGGER = f"{LOGGER}.hub"


class LiveSource(Protocol):
    def target(self, uri: str) -> Target | None:
        """What a subscription to ``uri`` follows; None when the URI is not this source's.

        Raises KkEtcdError when the URI is this source's but may not be followed (a denied key).
        """
        ...


class ListenStreams(Subscriber):
    """Every open ``subscriptions/listen`` stream, as one subscriber: a URI is followed while any stream wants it.

    An update is published once on the bus; each stream's handler passes on only the URIs it asked for.
    """

    def __init__(self, bus: SubscriptionBus) -> None:
        super().__init__()
        self.bus = bus
        self.wanted: Counter[str] = Counter()

    async def updated(self, uris: set[str]) -> None:
        for uri in uris:
            await self.bus.publish(ResourceUpdated(uri=uri))


class LiveUpdates:
    def __init__(self, etcd: EtcdClient, bus: SubscriptionBus | None = None) -> None:
        self.bus: SubscriptionBus = bus or InMemorySubscriptionBus()
        self.watches = ResourceWatches(etcd)
        self.sources: list[LiveSource] = []
        self.clients: dict[Connection, ConnectedClient] = {}
        self._listen_streams = ListenStreams(self.bus)
        self._serve_listen = ListenHandler(self.bus)
        self._tg: TaskGroup | None = None

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Watches and senders live as long as this block: hold it while the server serves."""
        async with self.watches.run(), anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                self._serve_listen.close()
                tg.cancel_scope.cancel()

    def install(self, server: MCPServer) -> None:
        """Serve subscriptions and log levels on ``server`` (MCPServer has no handlers for them)."""
        lowlevel = lowlevel_server(server)
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)
        lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, self._set_level)
        lowlevel.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, self._listen)
        lowlevel.middleware.append(self._meet_clients)

    def hub_transition(self, key: InstanceKey, status: HealthStatus) -> None:
        """The hub's ``on_transition``: called in the hub's loop, so it only queues."""
        level: LoggingLevel = "warning" if status.status == "critical" else "info"
        data = {"instance": key.path, "status": status.status, "output": status.output}
        for client in self.clients.values():
            client.log(level, HUB_LOGGER, data)

    # Handshake-era clients --------------------------------------------------------------------------

    async def _meet_clients(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Know every handshake-era client from its first message, so hub logs reach it without a request."""
        if self._tg is not None and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._client(ctx)
        return await call_next(ctx)

    def _client(self, ctx: ServerRequestContext[Any, Any]) -> ConnectedClient:
        connection = connection_of(ctx)
        client = self.clients.get(connection)
        if client is not None:
            return client
        if self._tg is None:
            raise MCPError(INTERNAL_ERROR, "live updates are not running in this server")
        client = self.clients[connection] = ConnectedClient(connection)
        connection.exit_stack.callback(self._forget, connection)  # unwound when the client goes away
        self._tg.start_soon(client.run_sender)
        return client

    def _forget(self, connection: Connection) -> None:
        client = self.clients.pop(connection, None)
        if client is not None:
            self.watches.drop(client)
            client.scope.cancel()

    async def _subscribe(self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        client = self._client(ctx)
        await self._follow(client, params.uri, self._target(params.uri))
        return EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        self.watches.unsubscribe(self._client(ctx), params.uri)
        return EmptyResult()

    async def _set_level(self, ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        self._client(ctx).log_level = params.level
        return EmptyResult()

    # 2026-07-28 listen streams ------------------------------------------------------------------------

    async def _listen(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        """mcp's own listen handler, with the etcd watches for the stream's resources held around it."""
        uris = list(dict.fromkeys(params.notifications.resource_subscriptions or ()))
        targets = {uri: target for uri in uris if (target := self._target(uri, unknown_ok=True)) is not None}
        streams = self._listen_streams
        held: list[str] = []
        try:
            for uri, target in targets.items():
                await self._follow(streams, uri, target)
                streams.wanted[uri] += 1
                held.append(uri)
            return await self._serve_listen(ctx, params)
        finally:
            for uri in held:
                streams.wanted[uri] -= 1
                if streams.wanted[uri] <= 0:
                    del streams.wanted[uri]
                    self.watches.unsubscribe(streams, uri)

    # Both ------------------------------------------------------------------------------------------------

    def _target(self, uri: str, *, unknown_ok: bool = False) -> Target | None:
        for source in self.sources:
            try:
                target = source.target(uri)
            except KkEtcdError as error:
                raise resource_error(error, uri) from error
            if target is not None:
                return target
        if unknown_ok:  # a listen stream honours any URI; one that is not ours just never fires
            return None
        raise MCPError(
            INVALID_PARAMS,
            f"cannot subscribe to {uri}: subscriptions are offered for etcd://kv/<key>, kk://services "
            "and kk://services/<name> (of the enabled toolsets)",
            data={"uri": uri},
        )

    async def _follow(self, subscriber: Subscriber, uri: str, target: Target | None) -> None:
        if target is None:
            return
        try:
            await self.watches.subscribe(subscriber, uri, target)
        except KkEtcdError as error:
            raise resource_error(error, uri) from error
        except NotRunning as error:
            raise MCPError(INTERNAL_ERROR, str(error)) from error
