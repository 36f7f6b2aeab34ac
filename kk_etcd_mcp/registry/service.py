"""RegistryService: what the registry tools and the SDK do, in terms of the store and a prober."""

from __future__ import annotations

import contextlib
import random
from collections import defaultdict
from itertools import count
from typing import Literal

import anyio

from ..errors import InvalidArgumentError, KkEtcdError, NotFoundError
from ..etcd import EtcdClient, KeyValue, current_leader, prefix_end
from ..ranges import MAX_LEASE_TTL, check_range
from .checkers import Prober
from .keys import InstanceKey, RegistryKeys
from .live_status import LiveStatus
from .membership import parse_member
from .model import (
    ALIVE_STATUSES,
    MAX_WEIGHT,
    CheckOptions,
    Instance,
    Registration,
    ServiceType,
    Status,
    check_addr,
    check_name,
    check_service_name,
    resolve_check,
)
from .results import CheckNow, DeregisterResult, HubMember, HubStatus, InstanceList, PickResult, RegisterResult
from .store import RegistryStore

Strategy = Literal["random", "round_robin", "weighted"]
_TYPES: tuple[ServiceType, ...] = ("http", "grpc", "tcp")
MIN_TTL = 2  # seconds: a shorter lease could expire before the first check


class RegistryService:
    def __init__(self, etcd: EtcdClient, keys: RegistryKeys, prober: Prober, live: LiveStatus | None = None) -> None:
        """``live``: the hub's latest results, shown instead of etcd's while this process leads the checking."""
        self.store = RegistryStore(etcd, keys)
        self.keys = keys
        self.prober = prober
        self.live = live
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
        *,
        dry_run: bool = False,
        reviewed: RegisterResult | None = None,
    ) -> RegisterResult:
        """Register (or replace) one instance; ``dry_run`` only says what it would do.

        With a ``ttl``, the registration disappears when its lease expires (nothing renews it), which
        removes an instance that is registered already. ``reviewed``: the dry run the caller was shown;
        a write with a ttl then goes ahead only while the instance is still as that dry run saw it.
        """
        registration = build_registration(name, addr, service_type, check, metadata, weight)
        if ttl is not None:
            check_range("ttl", ttl, MIN_TTL, MAX_LEASE_TTL, " seconds")
        etcd_key = self.store.main_key(registration)
        if dry_run:
            current = await self.store.get(registration)
            planned = self._register_result(registration, etcd_key, ttl, current, 0, await self._revision(current))
            return planned.model_copy(update={"dry_run": True})
        lease = await self.store.etcd.lease_grant(ttl) if ttl is not None else 0
        expected = None
        if ttl is not None and reviewed is not None:
            expected = reviewed.previous_mod_revision or 0
        try:
            result = await self.store.put(registration, lease=lease, expected_mod=expected)
        except BaseException:
            if lease:  # nothing was written under it; if the revoke fails too, the lease expires by itself
                with anyio.CancelScope(shield=True), contextlib.suppress(KkEtcdError):
                    await self.store.etcd.lease_revoke(lease)
            raise
        return self._register_result(registration, etcd_key, ttl, result.prev, lease, result.revision)

    async def _revision(self, current: KeyValue | None) -> int:
        return current.mod_revision if current is not None else await self.store.etcd.current_revision()

    @staticmethod
    def _register_result(
        registration: Registration, etcd_key: str, ttl: int | None, prev: KeyValue | None, lease: int, revision: int
    ) -> RegisterResult:
        what = f"the {registration.type} instance {registration.addr} of service {registration.name}"
        check = registration.check
        checked = f"checked by {check.type} {check.addr} every {check.interval:g}s"
        verb = "register" if prev is None else "replace the registration of"
        expiry = f"; it expires {ttl} s later unless registered again" if ttl is not None else ""
        removes = []
        if ttl is not None and prev is not None:
            removes = [f"{what}: it is deregistered when its new {ttl}-second lease expires (nothing renews it)"]
        return RegisterResult(
            type=registration.type,
            name=registration.name,
            addr=registration.addr,
            key=etcd_key,
            revision=revision,
            created=prev is None,
            previous_mod_revision=prev.mod_revision if prev is not None else None,
            lease=lease,
            check=check,
            change=f"{verb} {what} (key {etcd_key}), {checked}{expiry}",
            removes=removes,
        )

    async def deregister(
        self, name: str, addr: str, service_type: ServiceType | None = None, dry_run: bool = False
    ) -> DeregisterResult:
        """Delete one instance's registration; ``dry_run`` only finds it and says what would go."""
        key, etcd_key = await self._find(name, addr, service_type)
        what = f"the {key.type} instance {addr} of service {name}"
        change = f"deregister {what} (key {etcd_key}); the hub stops checking it and removes its status"
        result = DeregisterResult(
            type=key.type, name=name, addr=addr, revision=0, key=etcd_key, change=change, removes=[what]
        )
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

    async def hub_status(self) -> HubStatus:
        """The hub group: each live member with its figures, and which one holds the registry-wide duties."""
        leader = await self._leader()
        members: list[HubMember] = []
        async for page in self.store.etcd.range_pages(self.keys.members, prefix_end(self.keys.members)):
            for kv in page.kvs:
                info = parse_member(kv.value)
                if info is not None:
                    members.append(HubMember(**info.model_dump(), duty_holder=info.hub_id == leader))
        pairs, _ = await self.store.pairs()
        mode = "sharded" if members else "leader" if leader else "none"
        return HubStatus(mode=mode, members=members, count=len(members), duty_holder=leader, instances=len(pairs))

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
        live = self.live
        if live is None or not live.leads():
            return instances
        shown = []
        for instance in instances:
            state = live.get(InstanceKey(instance.type, instance.name, instance.addr))
            if state is not None:
                instance = instance.model_copy(
                    update={
                        "status": state.status,
                        "output": state.output,
                        "since": state.since,
                        "checked_at": state.checked_at,
                        "checked_at_is": "latest_check",
                        "checked_by": state.checked_by,
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
    check_service_name(name)
    check_addr(addr)
    check_range("weight", weight, 1, MAX_WEIGHT)
    return Registration(
        type=service_type,
        name=name,
        addr=addr,
        check=resolve_check(service_type, addr, check),
        metadata=metadata or {},
        weight=weight,
    )
