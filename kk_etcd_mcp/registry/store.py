"""Reading and writing registrations and statuses in etcd: shared by the hub, the tools and the SDK."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConflictError, NotFoundError
from ..etcd import Compare, EtcdClient, KeyValue, Put, PutResult, prefix_end
from .keys import InstanceKey, RegistryKeys
from .model import HealthStatus, Instance, Registration, ServiceType, addr_problem, service_name_problem
from .wire import InvalidRegistration, registration_from_json, registration_to_json, status_from_json

_PAGE = 1000


@dataclass(frozen=True, slots=True)
class StoredRegistration:
    """A registration key as found in etcd: parsed, or the reason it cannot be."""

    key: InstanceKey
    kv: KeyValue
    registration: Registration | None
    problem: str | None = None


class RegistryStore:
    def __init__(self, etcd: EtcdClient, keys: RegistryKeys) -> None:
        self.etcd = etcd
        self.keys = keys

    async def _scan(self, prefix: str, revision: int = 0) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` at one revision (the first page's, unless given)."""
        kvs: list[KeyValue] = []
        start, end = prefix.encode(), prefix_end(prefix)
        while True:
            page = await self.etcd.range(start, end, limit=_PAGE, revision=revision)
            revision = revision or page.revision
            kvs.extend(page.kvs)
            if not page.more or not page.kvs:
                return kvs, revision
            start = page.kvs[-1].key + b"\0"

    async def registrations(
        self, service_type: ServiceType | None = None, name: str | None = None, *, revision: int = 0
    ) -> tuple[list[StoredRegistration], int]:
        prefix = self.keys.service_prefix(self.keys.registrations, service_type, name)
        kvs, revision = await self._scan(prefix, revision)
        return [found for kv in kvs if (found := self.parse_registration(kv)) is not None], revision

    def parse_registration(self, kv: KeyValue) -> StoredRegistration | None:
        key = self.keys.parse(kv.key.decode(errors="replace"))
        if key is None:
            return None
        # A name or address written before today's rules (or by another tool) is reported, never checked.
        problem = service_name_problem(key.name) or addr_problem(key.addr)
        if problem is not None:
            return StoredRegistration(key, kv, None, f"registration is invalid: {problem}")
        try:
            return StoredRegistration(key, kv, registration_from_json(kv.value, key))
        except InvalidRegistration as exc:
            return StoredRegistration(key, kv, None, str(exc))

    async def statuses(
        self, service_type: ServiceType | None = None, name: str | None = None, *, revision: int = 0
    ) -> dict[InstanceKey, HealthStatus | None]:
        """Every status key under the prefix; None for a document that cannot be read."""
        prefix = self.keys.service_prefix(self.keys.statuses, service_type, name)
        kvs, _ = await self._scan(prefix, revision)
        found: dict[InstanceKey, HealthStatus | None] = {}
        for kv in kvs:
            key = self.keys.parse(kv.key.decode(errors="replace"))
            if key is not None:
                found[key] = status_from_json(kv.value)
        return found

    async def endpoints(self, name: str | None = None) -> dict[InstanceKey, bytes]:
        """gRPC endpoint values (wire.endpoint_to_json) of one service, or of all; keys we cannot parse left out."""
        prefix = f"{self.keys.endpoint_target(name)}/" if name is not None else self.keys.endpoints
        kvs, _ = await self._scan(prefix)
        found: dict[InstanceKey, bytes] = {}
        for kv in kvs:
            key = self.keys.parse_endpoint(kv.key.decode(errors="replace"))
            if key is not None:
                found[key] = kv.value
        return found

    async def instances(self, service_type: ServiceType | None = None, name: str | None = None) -> list[Instance]:
        """Registrations joined with their statuses, read at one revision."""
        stored, revision = await self.registrations(service_type, name)
        statuses = await self.statuses(service_type, name, revision=revision)
        return [as_instance(item, statuses.get(item.key)) for item in stored]

    async def put(self, registration: Registration, *, lease: int = 0, expected_mod: int | None = None) -> PutResult:
        """Write ``registration``; with ``expected_mod``, only if its key's mod_revision is that (0: absent),
        else ConflictError and nothing is written."""
        key = self.keys.registration(instance_key(registration)).encode()
        value = registration_to_json(registration).encode()
        if expected_mod is None:
            return await self.etcd.put(key, value, lease=lease, prev_kv=True)
        put = Put(key, value, lease=lease, prev_kv=True)
        res = await self.etcd.txn([Compare(key, "mod", "==", expected_mod)], [put])
        if not res.succeeded:
            raise ConflictError(
                f"the registration of {registration.name} at {registration.addr} changed after it was previewed; "
                "nothing was written. Call service_register again to see (and confirm) the change it would make now."
            )
        written = res.results[0]
        assert isinstance(written, PutResult)
        return PutResult(revision=res.revision, prev=written.prev)

    async def get(self, key: InstanceKey) -> KeyValue | None:
        return await self.etcd.get(self.keys.registration(key))

    async def delete(self, key: InstanceKey) -> int:
        result = await self.etcd.delete(self.keys.registration(key))
        if not result.deleted:
            raise NotFoundError(
                f"no {key.type} instance {key.addr} of service {key.name} is registered; "
                "service_list shows what is registered"
            )
        return result.revision


def instance_key(registration: Registration) -> InstanceKey:
    return InstanceKey(registration.type, registration.name, registration.addr)


def as_instance(item: StoredRegistration, status: HealthStatus | None) -> Instance:
    reg = item.registration
    if reg is None:  # the hub reports it critical too; say why without waiting for it
        return Instance(
            type=item.key.type, name=item.key.name, addr=item.key.addr, status="critical",
            output=item.problem or "", lease=item.kv.lease,
            since=status.since if status else None, checked_at=status.checked_at if status else None,
        )  # fmt: skip
    return Instance(
        type=reg.type,
        name=reg.name,
        addr=reg.addr,
        status=status.status if status else "critical",
        output=status.output if status else "not checked yet",
        since=status.since if status else None,
        checked_at=status.checked_at if status else None,
        check=reg.check,
        metadata=reg.metadata,
        weight=reg.weight,
        lease=item.kv.lease,
    )
