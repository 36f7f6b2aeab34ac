"""What the registry stores in etcd, byte for byte. Must stay JSON-compatible with kk_etcd_go.

kk_etcd_go writes registrations with protojson (``PBServiceRegistration``): PascalCase fields,
``ServiceType`` as an enum name ("Http", "Grpc") or number (1, 2), durations as strings ("5s").
We write the same fields, durations in protojson form, plus ours (``Metadata``, ``Weight`` and the
extra ``CheckConfig`` fields), so our registrations read back in kk_etcd_go's shape. The key, not
the JSON, says which instance a registration is: the JSON's name and address are informational.
Endpoint values (``<root>endpoints/...``) follow etcd's own naming format instead (see below).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from ..errors import InvalidArgumentError
from .durations import format_duration
from .keys import TYPES_BY_WIRE, WIRE_TYPES, InstanceKey
from .model import CheckOptions, HealthStatus, Registration, ServiceType, resolve_check, validation_reason

_ENUM_NUMBERS: dict[int, ServiceType] = {1: "http", 2: "grpc", 3: "tcp"}  # protojson may write enum numbers


class InvalidRegistration(ValueError):
    """A stored registration that cannot be checked; the message says why."""


def registration_to_json(reg: Registration) -> str:
    check = reg.check
    config: dict[str, Any] = {
        "Type": WIRE_TYPES[check.type],
        "Timeout": format_duration(check.timeout),
        "Interval": format_duration(check.interval),
        "Addr": check.addr,
        "SuccessBeforePassing": check.success_before_passing,
        "FailuresBeforeCritical": check.failures_before_critical,
    }
    if check.grpc_service:
        config["GrpcService"] = check.grpc_service
    if check.tls:
        config["Tls"] = True
    if check.ca_file:
        config["CaFile"] = check.ca_file
    if check.deregister_critical_after is not None:
        config["DeregisterCriticalAfter"] = format_duration(check.deregister_critical_after)
    document = {
        "ServiceType": WIRE_TYPES[reg.type],
        "ServiceName": reg.name,
        "ServiceAddr": reg.addr,
        "CheckConfig": config,
        "Metadata": reg.metadata,
        "Weight": reg.weight,
    }
    return json.dumps(document, separators=(",", ":"))


def registration_from_json(raw: bytes, key: InstanceKey) -> Registration:
    """Read a stored registration (ours or kk_etcd_go's); InvalidRegistration says what is wrong."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRegistration(f"registration is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRegistration("registration must be a JSON object")
    config = document.get("CheckConfig") or {}
    if not isinstance(config, dict):
        raise InvalidRegistration("CheckConfig must be a JSON object")
    try:
        options = CheckOptions(
            type=_service_type(config["Type"]) if "Type" in config else None,
            addr=config.get("Addr") or None,
            timeout=config.get("Timeout"),
            interval=config.get("Interval"),
            grpc_service=config.get("GrpcService"),
            tls=config.get("Tls"),
            ca_file=config.get("CaFile"),
            success_before_passing=config.get("SuccessBeforePassing"),
            failures_before_critical=config.get("FailuresBeforeCritical"),
            deregister_critical_after=config.get("DeregisterCriticalAfter"),
        )
        return Registration(
            type=key.type,
            name=key.name,
            addr=key.addr,
            check=resolve_check(key.type, key.addr, options),
            metadata=document.get("Metadata") or {},
            weight=document.get("Weight") or 1,
        )
    except (ValidationError, ValueError, InvalidArgumentError) as exc:
        raise InvalidRegistration(f"invalid registration: {validation_reason(exc)}") from None


def _service_type(value: object) -> ServiceType:
    if isinstance(value, int) and value in _ENUM_NUMBERS:
        return _ENUM_NUMBERS[value]
    if isinstance(value, str) and value in TYPES_BY_WIRE:
        return TYPES_BY_WIRE[value]
    raise ValueError(f"unknown check type {value!r} (expected Http, Grpc or Tcp)")


def status_to_json(status: HealthStatus) -> str:
    return status.model_dump_json()


def status_from_json(raw: bytes) -> HealthStatus | None:
    """None for a status document we cannot read (it is rewritten at the next transition)."""
    try:
        return HealthStatus.model_validate_json(raw)
    except ValidationError:
        return None


def alive_document(alive: Iterable[tuple[InstanceKey, str]]) -> str:
    """kk_etcd_go's alive hub, ``{"<Type>-<name>": [registration, ...]}``, sorted for stable bytes.

    Joined from each registration's JSON as ``registration_to_json`` made it, not encoded again: the
    hub rebuilds this for every batch of transitions, over every alive instance.
    """
    groups: dict[str, list[str]] = {}
    for key, document in sorted(alive, key=lambda item: (item[0].type, item[0].name, item[0].addr)):
        groups.setdefault(f"{WIRE_TYPES[key.type]}-{key.name}", []).append(document)
    return "{" + ",".join(f"{json.dumps(group)}:[{','.join(docs)}]" for group, docs in groups.items()) + "}"


# etcd naming endpoints ---------------------------------------------------------------------------
# Must stay JSON-compatible with etcd's client/v3/naming/endpoints (internal.Update, Go's encoding/json):
# ``{"Op": 0, "Addr": "<host:port>", "Metadata": <any>}``. Op 0 is endpoints.Add; Delete (1) is never
# stored, a deleted key is the delete. Go's resolver (``etcd:///<target>``) dials ``Addr``, not the key.
ENDPOINT_ADD = 0


def endpoint_to_json(addr: str, metadata: dict[str, str]) -> str:
    """An endpoint as etcd's Go endpoints.Manager writes it; no metadata is ``null``, as Go marshals a nil."""
    document = {"Op": ENDPOINT_ADD, "Addr": addr, "Metadata": dict(sorted(metadata.items())) or None}
    return json.dumps(document, separators=(",", ":"))


def endpoint_addr_from_json(raw: bytes) -> str | None:
    """The address an endpoint value names (whatever its Op: Go's resolver takes every stored value as an
    Add); None for a value that is not an endpoint."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    addr = document.get("Addr") if isinstance(document, dict) else None
    return addr if isinstance(addr, str) and addr else None
