"""The registry's etcd key layout (DESIGN.md "etcd key layout"), under a configurable root prefix.

Which key kk_etcd_go reads, and what each holds, is in ``wire.py``'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .model import ServiceType

WIRE_TYPES: dict[ServiceType, str] = {"http": "Http", "grpc": "Grpc", "tcp": "Tcp"}
TYPES_BY_WIRE: dict[str, ServiceType] = {wire: kind for kind, wire in WIRE_TYPES.items()}

Section = Literal["registration", "extension"]  # kk_etcd_go's key of an instance, or ours


@dataclass(frozen=True, slots=True)
class InstanceKey:
    type: ServiceType
    name: str
    addr: str

    @property
    def path(self) -> str:
        """``<Type>/<name>/<addr>``: the part shared by registration and status keys."""
        return f"{WIRE_TYPES[self.type]}/{self.name}/{self.addr}"


@dataclass(frozen=True, slots=True)
class RegistryKeys:
    root: str = "kk_service/"

    @property
    def registrations(self) -> str:
        return f"{self.root}registration/"

    @property
    def extensions(self) -> str:
        """Our part of every registration, which kk_etcd_go never reads. It sorts right after
        ``registrations`` ("_" > "/"), so ``registration_range`` covers both with one watch."""
        return f"{self.root}registration_ext/"

    @property
    def registration_range(self) -> tuple[str, str]:
        """``[start, end)`` over both registration sections (and nothing we write besides)."""
        return self.registrations, f"{self.root}registration_ext0"  # "0" follows "/"

    @property
    def statuses(self) -> str:
        return f"{self.root}status/"

    @property
    def alive(self) -> str:
        """kk_etcd_go's alive document: one key holding every alive instance."""
        return f"{self.root}alive/"

    @property
    def audit(self) -> str:
        """The audit trail, when the server keeps it in etcd (``audit/sinks.py`` has its layout)."""
        return f"{self.root}audit/"

    @property
    def leader(self) -> str:
        return f"{self.root}hub/leader"

    @property
    def members(self) -> str:
        """The hub group: one key per live hub, on its lease (``membership.py``)."""
        return f"{self.root}hub/members/"

    def member(self, hub_id: str) -> str:
        return f"{self.members}{hub_id}"

    @property
    def endpoints(self) -> str:
        """etcd naming endpoints of alive gRPC instances: ``<root>endpoints/<name>/<addr>``."""
        return f"{self.root}endpoints/"

    def endpoint_target(self, name: str) -> str:
        """The target etcd's gRPC resolver takes for ``name``: keys are ``<target>/<addr>``; Go dials
        ``etcd:///<target>/`` (the trailing slash keeps ``api`` from matching ``api-v2``: the resolver
        reads ``<target>`` as a plain prefix)."""
        return f"{self.endpoints}{name}"

    def endpoint(self, name: str, addr: str) -> str:
        return f"{self.endpoint_target(name)}/{addr}"

    def parse_endpoint(self, key: str) -> InstanceKey | None:
        """The gRPC instance an endpoint key names; None for anything else."""
        if not key.startswith(self.endpoints):
            return None
        parts = key[len(self.endpoints) :].split("/")
        if len(parts) == 2 and parts[0] and parts[1]:
            return InstanceKey("grpc", parts[0], parts[1])
        return None

    def registration(self, key: InstanceKey) -> str:
        return f"{self.registrations}{key.path}"

    def extension(self, key: InstanceKey) -> str:
        return f"{self.extensions}{key.path}"

    def status(self, key: InstanceKey) -> str:
        return f"{self.statuses}{key.path}"

    def service_prefix(self, section: str, service_type: ServiceType | None, name: str | None) -> str:
        """Prefix of ``section`` (registrations or statuses) narrowed to a type, then a name."""
        if service_type is None:
            return section
        if name is None:
            return f"{section}{WIRE_TYPES[service_type]}/"
        return f"{section}{WIRE_TYPES[service_type]}/{name}/"

    def parse(self, key: str) -> InstanceKey | None:
        """The instance a registration, extension or status key names; None for anything else."""
        for section in (self.registrations, self.extensions, self.statuses):
            if key.startswith(section):
                return _instance(key[len(section) :])
        return None

    def parse_registration(self, key: str) -> tuple[Section, InstanceKey] | None:
        """Which of an instance's two registration keys ``key`` is; None for anything else."""
        sections: tuple[tuple[Section, str], ...] = (
            ("registration", self.registrations),
            ("extension", self.extensions),
        )
        for name, section in sections:
            if key.startswith(section):
                instance = _instance(key[len(section) :])
                return (name, instance) if instance is not None else None
        return None


def _instance(path: str) -> InstanceKey | None:
    """``<Type>/<name>/<addr>`` as an InstanceKey."""
    parts = path.split("/")
    if len(parts) == 3 and parts[0] in TYPES_BY_WIRE and parts[1] and parts[2]:
        return InstanceKey(TYPES_BY_WIRE[parts[0]], parts[1], parts[2])
    return None
