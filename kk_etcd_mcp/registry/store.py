"""Reading and writing registrations and statuses in etcd: shared by the hub, the tools and the SDK."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConflictError, NotFoundError
from ..etcd import Compare, Delete, EtcdClient, KeyValue, Put, PutResult, TxnOp, prefix_end
from .keys import InstanceKey, RegistryKeys
from .model import HealthStatus, Instance, Registration, ServiceType, addr_problem, service_name_problem
from .wire import (
    InvalidRegistration,
    extension_to_json,
    is_kk_etcd_go_document,
    kk_etcd_go_can_read,
    registration_from_documents,
    registration_to_json,
    status_from_json,
)


@dataclass(frozen=True, slots=True)
class StoredRegistration:
    """An instance's registration as found in etcd (kk_etcd_go's key, ours, or both; see wire.py):
    parsed, or the reason it cannot be."""

    key: InstanceKey
    base: KeyValue | None  # at kk_etcd_go's key
    extension: KeyValue | None  # at ours
    registration: Registration | None
    problem: str | None = None

    @property
    def kv(self) -> KeyValue:
        """The key that makes the instance registered: kk_etcd_go's, else ours."""
        kv = self.base or self.extension
        assert kv is not None
        return kv

    @property
    def lease(self) -> int:
        return self.kv.lease

    @property
    def outdated(self) -> bool:
        """kk_etcd_go's key holds what an older version of ours wrote there; rewrite it (``rewrite``)."""
        return self.base is not None and self.registration is not None and not is_kk_etcd_go_document(self.base.value)


Pair = tuple[KeyValue | None, KeyValue | None]  # (kk_etcd_go's key, ours) of one instance


def join(key: InstanceKey, base: KeyValue | None, extension: KeyValue | None) -> StoredRegistration | None:
    """The registration an instance's two keys make; None when they make none (see wire.py)."""
    # A name or address written before today's rules (or by another tool) is reported, never checked.
    problem = service_name_problem(key.name) or addr_problem(key.addr)
    try:
        reg = registration_from_documents(key, base.value if base else None, extension.value if extension else None)
    except InvalidRegistration as exc:
        return StoredRegistration(
            key, base, extension, None, f"registration is invalid: {problem}" if problem else str(exc)
        )
    if reg is None:
        return None
    if problem is not None:
        return StoredRegistration(key, base, extension, None, f"registration is invalid: {problem}")
    return StoredRegistration(key, base, extension, reg)


class RegistryStore:
    def __init__(self, etcd: EtcdClient, keys: RegistryKeys) -> None:
        self.etcd = etcd
        self.keys = keys

    async def _scan(self, prefix: str, revision: int = 0) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` at one revision (the first page's, unless given)."""
        kvs: list[KeyValue] = []
        async for page in self.etcd.range_pages(prefix, prefix_end(prefix), revision=revision):
            revision = page.revision
            kvs.extend(page.kvs)
        return kvs, revision

    async def pairs(
        self, service_type: ServiceType | None = None, name: str | None = None, *, revision: int = 0
    ) -> tuple[dict[InstanceKey, Pair], int]:
        """Both registration keys of every instance under the prefix, read at one revision."""
        kvs: list[KeyValue] = []
        for section in (self.keys.registrations, self.keys.extensions):
            section_kvs, revision = await self._scan(self.keys.service_prefix(section, service_type, name), revision)
            kvs += section_kvs
        return self.pairs_of(kvs), revision

    def pairs_of(self, kvs: list[KeyValue]) -> dict[InstanceKey, Pair]:
        """The registration keys among ``kvs``, by instance; other keys are left out."""
        found: dict[InstanceKey, Pair] = {}
        for kv in kvs:
            parsed = self.keys.parse_registration(kv.key.decode(errors="replace"))
            if parsed is not None:
                which, key = parsed
                base, extension = found.get(key, (None, None))
                found[key] = (kv, extension) if which == "registration" else (base, kv)
        return found

    async def registrations(
        self, service_type: ServiceType | None = None, name: str | None = None, *, revision: int = 0
    ) -> tuple[list[StoredRegistration], int]:
        pairs, revision = await self.pairs(service_type, name, revision=revision)
        return [found for key, pair in sorted(pairs.items(), key=_order) if (found := join(key, *pair))], revision

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

    def main_key(self, registration: Registration) -> str:
        """The key that makes ``registration`` registered: kk_etcd_go's where it can read it, else ours."""
        key = instance_key(registration)
        return self.keys.registration(key) if kk_etcd_go_can_read(registration) else self.keys.extension(key)

    def put_ops(self, registration: Registration, lease: int = 0) -> list[TxnOp]:
        """Both keys of an instance, in one transaction: kk_etcd_go's (or its removal, for an instance it
        cannot have) and ours; the first operation is on ``main_key``, with its previous value."""
        key = instance_key(registration)
        base, extension = self.keys.registration(key).encode(), self.keys.extension(key).encode()
        ours = extension_to_json(registration).encode()
        if kk_etcd_go_can_read(registration):
            theirs = registration_to_json(registration).encode()
            return [Put(base, theirs, lease=lease, prev_kv=True), Put(extension, ours, lease=lease)]
        return [Put(extension, ours, lease=lease, prev_kv=True), Delete(base)]

    async def put(self, registration: Registration, *, lease: int = 0, expected_mod: int | None = None) -> PutResult:
        """Write ``registration``; with ``expected_mod``, only if its main key's mod_revision is that (0: absent),
        else ConflictError and nothing is written."""
        compares = (
            [] if expected_mod is None else [Compare(self.main_key(registration).encode(), "mod", "==", expected_mod)]
        )
        result = await self.etcd.txn(compares, self.put_ops(registration, lease))
        if not result.succeeded:
            raise ConflictError(
                f"the registration of {registration.name} at {registration.addr} changed after it was previewed; "
                "nothing was written. Call service_register again to see (and confirm) the change it would make now."
            )
        main = result.results[0]
        assert isinstance(main, PutResult)
        return PutResult(revision=result.revision, prev=main.prev)

    async def get(self, registration: Registration) -> KeyValue | None:
        """What ``registration``'s main key holds now (None: nothing is registered there)."""
        return await self.etcd.get(self.main_key(registration))

    async def rewrite(self, stored: StoredRegistration, fence: Compare) -> bool:
        """Write an ``outdated`` registration in today's layout, on its lease, while ``fence`` holds and
        nobody changed it meanwhile; False when it was not written."""
        assert stored.base is not None and stored.registration is not None
        unchanged = Compare(stored.base.key, "mod", "==", stored.base.mod_revision)
        result = await self.etcd.txn([fence, unchanged], self.put_ops(stored.registration, stored.base.lease))
        return result.succeeded

    async def remove_leftover(self, extension: KeyValue, fence: Compare) -> bool:
        """Delete our key of an instance kk_etcd_go deregistered, unless it was registered again meanwhile."""
        parsed = self.keys.parse_registration(extension.key.decode(errors="replace"))
        assert parsed is not None
        base = self.keys.registration(parsed[1]).encode()
        compares = [
            fence,
            Compare(base, "create", "==", 0),
            Compare(extension.key, "mod", "==", extension.mod_revision),
        ]
        return (await self.etcd.txn(compares, [Delete(extension.key)])).succeeded

    def delete_ops(self, key: InstanceKey) -> list[TxnOp]:
        return [Delete(self.keys.registration(key).encode()), Delete(self.keys.extension(key).encode())]

    async def delete(self, key: InstanceKey) -> int:
        result = await self.etcd.txn([], self.delete_ops(key))
        if not sum(getattr(r, "deleted", 0) for r in result.results):
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
            output=item.problem or "", lease=item.lease,
            since=status.since if status else None, checked_at=status.checked_at if status else None,
            checked_by=status.checker or None if status else None,
        )  # fmt: skip
    return Instance(
        type=reg.type,
        name=reg.name,
        addr=reg.addr,
        status=status.status if status else "critical",
        output=status.output if status else "not checked yet",
        since=status.since if status else None,
        checked_at=status.checked_at if status else None,
        checked_by=status.checker or None if status else None,
        check=reg.check,
        metadata=reg.metadata,
        weight=reg.weight,
        lease=item.lease,
    )


def _order(item: tuple[InstanceKey, Pair]) -> bytes:
    return item[0].path.encode()  # etcd's key order, as one section alone would list them
