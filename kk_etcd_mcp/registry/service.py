"""RegistryService: what the registry tools and the SDK do, in terms of the store and a prober."""

from __future__ import annotations

import random
from collections import defaultdict
from itertools import count
from typing import Literal

from ..errors import InvalidArgumentError, NotFoundError
from ..etcd import EtcdClient
from ..etcd.election import current_leader
from .checkers import Prober
from .keys import InstanceKey, RegistryKeys
from .leadership import HubRunner
from .model import (
    ALIVE_STATUSES,
    CheckOptions,
    Instance,
    Registration,
    ServiceType,
    Status,
    check_addr,
    check_name,
    resolve_check,
)
from .results import CheckNow, DeregisterResult, InstanceList, PickResult, RegisterResult
from .store import RegistryStore

Strategy = Literal["random", "round_robin", "weighted"]
_TYPES: tuple[ServiceType, ...] = ("http", "grpc", "tcp")


class RegistryService:
    def __init__(
        self, etcd: EtcdClient, keys: RegistryKeys, prober: Prober, hub_runner: HubRunner | None = None
    ) -> None:
        self.store = RegistryStore(etcd, keys)
        self.keys = keys
        self.prober = prober
        self.hub_runner = hub_runner
        self._live_checks = count(1)  # a probe id per live check: concurrent checks never share a channel
        self._turns: defaultdict[tuple[ServiceType | None, str], int] = defaultdict(int)

    async def register(
        self,
        name: str,
        addr: str,
        service_type: ServiceType = "http",
        check: CheckOptions | None = None,
        metadata: dict[str, str] | None = None,
        weight: int = 1,
        ttl: int | None = None,
    ) -> RegisterResult:
        registration = build_registration(name, addr, service_type, check, metadata, weight)
        if ttl is not None and ttl < 2:
            raise InvalidArgumentError(f"ttl must be at least 2 seconds, got {ttl}")
        lease = await self.store.etcd.lease_grant(ttl) if ttl is not None else 0
        result = await self.store.put(registration, lease=lease)
        return RegisterResult(
            type=service_type,
            name=name,
            addr=addr,
            key=self.store.main_key(registration),
            revision=result.revision,
            created=result.prev is None,
            lease=lease,
            check=registration.check,
        )

    async def deregister(
        self, name: str, addr: str, service_type: ServiceType | None = None, dry_run: bool = False
    ) -> DeregisterResult:
        """Delete one instance's registration; ``dry_run`` only finds it and says what would go."""
        key, etcd_key = await self._find(name, addr, service_type)
        change = (
            f"deregister the {key.type} instance {addr} of service {name} (key {etcd_key}); "
            "the hub stops checking it and removes its status"
        )
        result = DeregisterResult(type=key.type, name=name, addr=addr, revision=0, key=etcd_key, change=change)
        if dry_run:
            return result.model_copy(update={"dry_run": True, "revision": await self.store.etcd.current_revision()})
        return result.model_copy(update={"revision": await self.store.delete(key)})

    async def list_instances(
        self, name: str | None = None, service_type: ServiceType | None = None, status: Status | None = None
    ) -> InstanceList:
        if name is not None:
            check_name(name)
        instances = self._with_live_state(await self._instances(service_type, name))
        if status is not None:
            instances = [i for i in instances if i.status == status]
        leader = await self._leader()
        return InstanceList(instances=instances, count=len(instances), hub=leader)

    async def alive(self, name: str, service_type: ServiceType | None = None) -> list[Instance]:
        check_name(name)
        instances = self._with_live_state(await self._instances(service_type, name))
        return [i for i in instances if i.status in ALIVE_STATUSES]

    async def alive_list(self, name: str, service_type: ServiceType | None = None) -> InstanceList:
        """alive() with the hub that leads the checking, as list_instances() names it."""
        instances = await self.alive(name, service_type)
        return InstanceList(instances=instances, count=len(instances), hub=await self._leader())

    async def pick(
        self, name: str, service_type: ServiceType | None = None, strategy: Strategy = "random"
    ) -> PickResult:
        """One alive instance that also passes a check made now; failing ones are skipped."""
        candidates = self._order(await self.alive(name, service_type), strategy, (service_type, name))
        skipped: list[str] = []
        for instance in candidates:
            result = await self._check(instance)
            if result.result in ALIVE_STATUSES:
                return PickResult(instance=instance, check=result, skipped=skipped)
            skipped.append(f"{instance.addr}: {result.output[:200]}")
        detail = f"; failed a live check: {'; '.join(skipped)}" if skipped else ""
        raise NotFoundError(f"no alive instance of {name}{detail}")

    async def check(self, name: str, addr: str, service_type: ServiceType | None = None) -> CheckNow:
        key, _ = await self._find(name, addr, service_type)
        for instance in await self._instances(key.type, name):
            if instance.addr == addr:
                return await self._check(instance)
        raise NotFoundError(f"{name} at {addr} was deregistered meanwhile")

    # Helpers --------------------------------------------------------------------------------------

    async def _instances(self, service_type: ServiceType | None, name: str | None) -> list[Instance]:
        if service_type is not None or name is None:
            return await self.store.instances(service_type, name)
        found: list[Instance] = []  # a name without a type: each type's subtree
        for kind in _TYPES:
            found.extend(await self.store.instances(kind, name))
        return found

    async def _find(self, name: str, addr: str, service_type: ServiceType | None) -> tuple[InstanceKey, str]:
        """The instance and the key that makes it registered (StoredRegistration.kv)."""
        check_name(name)
        check_name(addr, "address")
        found: dict[ServiceType, str] = {}
        for kind in [service_type] if service_type is not None else list(_TYPES):
            stored, _ = await self.store.registrations(kind, name)
            found.update((s.key.type, s.kv.key.decode()) for s in stored if s.key.addr == addr)
        types = list(found)
        if not types:
            which = f"{service_type} " if service_type else ""
            raise NotFoundError(
                f"no {which}instance {addr} of service {name} is registered; service_list shows what is registered"
            )
        if len(types) > 1:
            raise InvalidArgumentError(f"{name} at {addr} is registered as {', '.join(types)}: give its type")
        return InstanceKey(types[0], name, addr), found[types[0]]

    async def _check(self, instance: Instance) -> CheckNow:
        if instance.check is None:
            raise InvalidArgumentError(f"{instance.name} at {instance.addr} cannot be checked: {instance.output}")
        probe_id = f"live/{instance.type}/{instance.name}/{instance.addr}#{next(self._live_checks)}"
        try:
            result = await self.prober.check(probe_id, instance.check)
        finally:  # a live check is a one-off: keep no gRPC channel open for it
            await self.prober.forget(probe_id)
        return CheckNow(
            type=instance.type,
            name=instance.name,
            addr=instance.addr,
            result=result.status,
            latency_ms=round(result.latency * 1000, 3),
            output=result.output,
            status=instance.status,
        )

    def _with_live_state(self, instances: list[Instance]) -> list[Instance]:
        """When this process leads the checking, show its latest view (writes to etcd may lag)."""
        hub = self.hub_runner.hub if self.hub_runner else None
        if hub is None:
            return instances
        shown = []
        for instance in instances:
            monitor = hub.monitors.get(InstanceKey(instance.type, instance.name, instance.addr))
            if monitor is not None and monitor.checked_at is not None:
                state = monitor.state
                instance = instance.model_copy(
                    update={
                        "status": state.status,
                        "output": state.output,
                        "since": state.since,
                        "checked_at": monitor.checked_at,
                        "checked_at_is": "latest_check",
                    }
                )
            shown.append(instance)
        return shown

    async def _leader(self) -> str | None:
        leader = await current_leader(self.store.etcd, self.keys.leader)
        return leader.value.decode(errors="replace") if leader else None

    def _order(
        self, instances: list[Instance], strategy: Strategy, turn_key: tuple[ServiceType | None, str]
    ) -> list[Instance]:
        if strategy == "round_robin":
            ordered = sorted(instances, key=lambda i: (i.type, i.addr))
            if not ordered:
                return ordered
            turn = self._turns[turn_key] % len(ordered)
            self._turns[turn_key] += 1
            return ordered[turn:] + ordered[:turn]
        if strategy == "weighted":  # weighted shuffle (Efraimidis-Spirakis): heavier instances come first more often
            return sorted(instances, key=lambda i: random.random() ** (1.0 / max(i.weight, 1)), reverse=True)
        return random.sample(instances, len(instances))


def build_registration(
    name: str,
    addr: str,
    service_type: ServiceType,
    check: CheckOptions | None,
    metadata: dict[str, str] | None,
    weight: int,
) -> Registration:
    """Validate everything before anything is written."""
    check_name(name)
    check_addr(addr)
    if weight < 1:
        raise InvalidArgumentError(f"weight must be at least 1, got {weight}")
    return Registration(
        type=service_type,
        name=name,
        addr=addr,
        check=resolve_check(service_type, addr, check),
        metadata=metadata or {},
        weight=weight,
    )
