"""The service registry: model and key layout, probes, the status state machine, the hub, the SDK.

The SDK's names are imported on first use (``lazy.py``): the server never needs them.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .keys import InstanceKey, RegistryKeys
from .leadership import HubRunner
from .model import CheckOptions, CheckSpec, HealthStatus, Instance, Registration, ServiceType, Status
from .results import CheckNow, DeregisterResult, HubMember, HubStatus, InstanceList, PickResult, RegisterResult
from .service import RegistryService, Strategy

if TYPE_CHECKING:
    from .sdk import KeptRegistration, ServiceRegistry

__getattr__ = lazy_exports(__name__, {".sdk": ("KeptRegistration", "ServiceRegistry")})

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
