"""The service registry: model and key layout, probes, the status state machine, the hub, the SDK."""

from .keys import InstanceKey, RegistryKeys
from .leadership import HubRunner
from .model import CheckOptions, CheckSpec, HealthStatus, Instance, Registration, ServiceType, Status
from .results import CheckNow, DeregisterResult, HubMember, HubStatus, InstanceList, PickResult, RegisterResult
from .sdk import KeptRegistration, ServiceRegistry
from .service import RegistryService, Strategy

__all__ = [
    "CheckNow",
    "CheckOptions",
    "CheckSpec",
    "DeregisterResult",
    "HealthStatus",
    "HubMember",
    "HubRunner",
    "HubStatus",
    "Instance",
    "InstanceKey",
    "InstanceList",
    "KeptRegistration",
    "PickResult",
    "RegisterResult",
    "Registration",
    "RegistryKeys",
    "RegistryService",
    "ServiceRegistry",
    "ServiceType",
    "Status",
    "Strategy",
]
