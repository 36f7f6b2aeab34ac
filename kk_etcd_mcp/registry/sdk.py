"""The Python SDK: keep a service registered while it runs, and find healthy instances of others.

    async with ServiceRegistry(["http://127.0.0.1:2379"]) as registry:
        async with registry.register("orders", "10.0.0.5:8080", "http"):
            ...  # registered under a lease; re-registered if etcd loses it; deleted on exit
        url = await registry.base_url("payments")
        async with registry.grpc_channel("inventory") as channel:
            ...  # to one picked instance; balanced=True: round robin over every alive one

Usable without the MCP server: it needs only etcd (and a hub running somewhere to keep statuses).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import grpc
from pydantic import ValidationError

from ..backoff import Backoff
from ..errors import InvalidArgumentError, KkEtcdError, NotFoundError
from ..etcd import EtcdClient, LeaseSession
from .checkers import Prober
from .grpc_target import balanced_options, static_target
from .keys import RegistryKeys
from .model import CheckOptions, Instance, Registration, ServiceType, check_name, validation_reason
from .service import RegistryService, Strategy, build_registration
from .wire import endpoint_addr_from_json

log = logging.getLogger(__name__)

_INITIAL_BACKOFF = 0.5
_MAX_BACKOFF = 5.0


class ServiceRegistry:
    def __init__(
        self,
        endpoints: Sequence[str] = ("http://127.0.0.1:2379",),
        *,
        etcd: EtcdClient | None = None,
        prefix: str = "kk_service/",
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        request_timeout: float = 5.0,
    ) -> None:
        self._etcd = etcd or EtcdClient(
            endpoints,
            username=username,
            password=password,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            request_timeout=request_timeout,
        )
        self._owns_etcd = etcd is None
        self._keys = RegistryKeys(prefix)
        self._stack = AsyncExitStack()
        self._service: RegistryService | None = None

    async def __aenter__(self) -> ServiceRegistry:
        async with AsyncExitStack() as stack:
            if self._owns_etcd:
                await stack.enter_async_context(self._etcd)
            prober = await stack.enter_async_context(Prober())
            self._service = RegistryService(self._etcd, self._keys, prober)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._service = None
        await self._stack.aclose()

    @property
    def service(self) -> RegistryService:
        if self._service is None:
            raise RuntimeError("ServiceRegistry is not open: use 'async with ServiceRegistry(...)'")
        return self._service

    def register(
        self,
        name: str,
        addr: str,
        type: ServiceType = "http",
        *,
        check: CheckOptions | dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        weight: int = 1,
        ttl: int = 10,
    ) -> AbstractAsyncContextManager[KeptRegistration]:
        """Register while the ``async with`` body runs; raises at once when the input is invalid."""
        try:
            options = CheckOptions.model_validate(check) if isinstance(check, dict) else check
        except ValidationError as exc:  # an unknown field or a bad duration: the same error as the rest
            raise InvalidArgumentError(f"invalid check for {addr}: {validation_reason(exc)}") from None
        if ttl < 2:  # LeaseSession would refuse it only on entry, with a ValueError
            raise InvalidArgumentError(f"ttl must be at least 2 seconds, got {ttl}")
        registration = build_registration(name, addr, type, options, metadata, weight)
        return KeptRegistration(self.service, registration, ttl).kept()

    async def alive(self, name: str, type: ServiceType | None = None) -> list[Instance]:
        """Instances the hub finds passing or warning."""
        return await self.service.alive(name, type)

    async def pick(
        self,
        name: str,
        type: ServiceType | None = None,
        strategy: Strategy = "random",
    ) -> Instance:
        """One alive instance that also passed a check just now; NotFoundError when there is none."""
        return (await self.service.pick(name, type, strategy)).instance

    async def base_url(self, name: str, strategy: Strategy = "random") -> str:
        """``http(s)://host:port`` of a picked HTTP instance."""
        instance = await self.pick(name, "http", strategy)
        scheme = "https" if instance.check is not None and instance.check.tls else "http"
        return f"{scheme}://{instance.addr}"

    async def grpc_endpoints(self, name: str) -> list[str]:
        """Addresses of the alive gRPC instances of ``name``, sorted, as the hub publishes them for
        etcd's gRPC resolver (``<prefix>endpoints/<name>/<addr>``; Go dials ``etcd:///<prefix>endpoints/<name>/``)."""
        check_name(name)
        found = await self.service.store.endpoints(name)
        return sorted({addr for raw in found.values() if (addr := endpoint_addr_from_json(raw)) is not None})

    @asynccontextmanager
    async def grpc_channel(
        self,
        name: str,
        strategy: Strategy = "random",
        *,
        options: Sequence[tuple[str, Any]] = (),
        balanced: bool = False,
    ) -> AsyncIterator[grpc.aio.Channel]:
        """A grpc.aio channel, closed on exit; TLS when the instances' checks use TLS.

        By default to one instance picked by ``strategy`` (it passed a check just now). ``balanced``: to
        every address of ``grpc_endpoints`` at once, calls spread by gRPC's ``round_robin`` (``strategy``
        unused). That list is read once (Python's grpc has no pluggable resolver): open a new channel to
        follow instances that come or go. With TLS, certificates are checked against the instances' host
        (they must share one), unless ``options`` name ``grpc.ssl_target_name_override``.
        """
        if balanced:
            target, addrs, tls, ca_file = await self._balanced_target(name)
            options = balanced_options(options, addrs, tls)
        else:
            instance = await self.pick(name, "grpc", strategy)
            spec = instance.check
            target, tls, ca_file = instance.addr, spec is not None and spec.tls, spec.ca_file if spec else None
        if tls:
            roots = await _read_ca_file(ca_file) if ca_file else None
            channel = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(roots), options=options)
        else:
            channel = grpc.aio.insecure_channel(target, options=options)
        try:
            yield channel
        finally:
            with anyio.CancelScope(shield=True):
                await channel.close()

    async def _balanced_target(self, name: str) -> tuple[str, list[str], bool, str | None]:
        """A static target over the published endpoints of ``name``, their addresses, and the TLS
        setting (use it, CA file) they share."""
        addrs = await self.grpc_endpoints(name)
        target = await static_target(addrs) if addrs else None
        if target is None:
            where = self.service.keys.endpoint_target(name)
            raise NotFoundError(
                f"no alive gRPC instance of {name} is published under {where}/ "
                "(a hub publishes gRPC instances there while they pass their checks)"
            )
        stored, _ = await self.service.store.registrations("grpc", name)
        tls = {(r.check.tls, r.check.ca_file) for item in stored if (r := item.registration) and r.addr in addrs}
        if len(tls) > 1:
            raise KkEtcdError(
                f"the gRPC instances of {name} disagree on TLS (some use it and some do not, or their CA "
                "files differ), so one channel cannot reach them all: use balanced=False"
            )
        use_tls, ca_file = tls.pop() if tls else (False, None)
        return target, addrs, use_tls, ca_file


async def _read_ca_file(path: str) -> bytes:
    try:
        return await anyio.Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot read CA file {path}, which the instances' TLS checks name: {exc.strerror}; "
            "give this process the same CA file, or register the instances with a CA file it can read"
        ) from None


class KeptRegistration:
    """A registration on a lease, kept alive like etcd's Session and written again if the lease is lost.

    ``lost`` is set once a lease of it was lost (etcd was away longer than ``ttl``) and stays set;
    ``losses`` counts them and ``lease_id`` names the lease it lives on now. Leaving the context
    revokes the lease, which deletes the registration.
    """

    def __init__(self, service: RegistryService, registration: Registration, ttl: int) -> None:
        self.registration = registration
        self.key = service.store.main_key(registration)
        self.lease_id = 0
        self.lost = anyio.Event()
        self.losses = 0
        self._service = service
        self._ttl = ttl

    @asynccontextmanager
    async def kept(self) -> AsyncIterator[KeptRegistration]:
        """Registered while the ``async with`` body runs."""
        async with anyio.create_task_group() as tg:
            await tg.start(self._keep)  # raises when etcd refuses the first registration
            try:
                yield self
            finally:  # the session revokes the lease on the way out: the registration goes with it
                tg.cancel_scope.cancel()

    async def _keep(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        started = False
        # At most one check interval apart: once etcd is back, the hub sees the service again within an interval.
        backoff = Backoff(_INITIAL_BACKOFF, min(_MAX_BACKOFF, self.registration.check.interval))
        while True:
            try:
                async with LeaseSession(self._service.store.etcd, self._ttl) as session:
                    await self._service.store.put(self.registration, lease=session.lease_id)
                    self.lease_id = session.lease_id
                    log.info("registered %s on lease %x", self.key, session.lease_id)
                    if not started:
                        started = True
                        task_status.started()
                    backoff.reset()
                    await session.lost.wait()
                self.losses += 1
                self.lost.set()
                log.warning("lease of %s was lost; registering it again", self.key)
            except KkEtcdError as error:
                if not started:
                    raise
                delay = backoff.next_delay()
                log.warning("cannot register %s yet (trying again in %.1fs): %s", self.key, delay, error)
                await anyio.sleep(delay)
