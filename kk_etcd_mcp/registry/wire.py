"""What the registry stores in etcd, byte for byte: the one place of the kk_etcd_go compatibility contract.

kk_etcd_go (v1.4.3, the last with this registry) shares the registry's etcd with us. It reads two places
under the root, strictly: the ``registration/`` section and the ``alive/`` key. It never looks at the
rest (``registration_ext/``, ``status/``, ``endpoints/``, ``hub/``, ``audit/``; its KV pages hide the
whole root). So:

``<root>registration/<Http|Grpc>/<name>/<addr>``: **kk_etcd_go's key.** Its hub and SDK read every
key under ``<root>registration/`` with strict ``protojson.Unmarshal`` into ``PBServiceRegistration``
(an unknown field, or a type other than Http and Grpc, is an error: its service list fails, its hub
panics at start). We write here exactly what its ``protojson.Marshal`` writes, and nothing more::

    {"ServiceType":"Grpc","ServiceName":"orders","ServiceAddr":"10.0.0.5:50051",
     "CheckConfig":{"Type":"Grpc","Timeout":"5s","Interval":"10s","Addr":"10.0.0.5:50051"}}

(enum names; durations as protojson strings: ``"5s"``, ``"1.500s"``). We write it only for instances
kk_etcd_go can check itself: service type Http or Grpc with an Http or Grpc check. We read whatever
is here as kk_etcd_go may have written it (enum names or numbers, any whitespace).

``<root>registration_ext/<Http|Grpc|Tcp>/<name>/<addr>``: **ours alone.** Every instance we register
has its whole registration here, in our own richer document (the kk_etcd_go fields plus ``Metadata``,
``Weight`` and ``CheckConfig``'s ``SuccessBeforePassing``, ``FailuresBeforeCritical``,
``DeregisterCriticalAfter``, ``GrpcService``, ``Tls``, ``CaFile``). It is written and deleted in the
same transaction as the kk_etcd_go key, on the same lease. The section sorts right after
``registration/`` (``_`` > ``/``) and before ``status/``, so one watch range covers both.

Reading an instance joins the two keys:

- kk_etcd_go key only: kk_etcd_go's registration (defaults for our fields);
- both: the extension, with kk_etcd_go's fields taken from its key (whoever wrote that key last, its
  SDK or ours, says how kk_etcd_go checks the instance);
- extension only: the registration, for an instance kk_etcd_go cannot have (Tcp type or Tcp check);
  for any other it is a leftover of an instance kk_etcd_go deregistered (it deletes only its own key),
  so the instance is not registered, and the hub deletes the leftover.

Migration: our older versions wrote the whole richer document (and Tcp instances) at the kk_etcd_go
key. Such a value is still read as before (the reader takes every field it knows), and the leading
hub rewrites it into this layout as soon as it sees it (a fenced transaction that holds only while the
value is unchanged, keeping its lease); any new write (``service_register``, the SDK's re-registration)
writes this layout too.

``<root>alive/``: **kk_etcd_go's alive document**, which its SDK decodes with Go's ``encoding/json``
(not protojson) into ``map[string][]*PBServiceRegistration``, keyed ``<Type>-<name>``. So enums are
numbers (Unknown 0, Http 1, Grpc 2) and durations are ``durationpb.Duration`` as encoding/json writes
it (``{"seconds":5}``, ``{"seconds":1,"nanos":500000000}``, a zero field left out), with Go's string
escaping and sorted map keys. Only instances kk_etcd_go can have (see above) are in it.

``<root>endpoints/<name>/<addr>``: etcd's own naming format (etcd ``client/v3/naming/endpoints``),
``{"Op":0,"Addr":"<host:port>","Metadata":null}``. ``Metadata`` is always ``null``: grpc-go's balancers
use the resolved address as a map key, and a JSON object there becomes a Go map, which panics ("hash of
unhashable type"). Our SDK takes an instance's metadata from its registration instead.

The key, not the JSON, says which instance a registration is: the JSON's name and address are
informational (kk_etcd_go uses them for its alive document's groups, so we write the key's).
Golden documents from kk_etcd_go's own code are in ``tests/interop/kk_etcd_go/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from ..errors import InvalidArgumentError
from .durations import format_duration
from .keys import TYPES_BY_WIRE, WIRE_TYPES, InstanceKey
from .model import CheckOptions, HealthStatus, Registration, ServiceType, resolve_check, validation_reason

_ENUM_NUMBERS: dict[int, ServiceType] = {1: "http", 2: "grpc", 3: "tcp"}  # protojson may write enum numbers
KK_ETCD_GO_TYPES: frozenset[ServiceType] = frozenset({"http", "grpc"})
_KK_ETCD_GO_ENUMS: dict[ServiceType, int] = {"http": 1, "grpc": 2}  # PBServiceType
_KK_ETCD_GO_FIELDS = frozenset({"ServiceType", "ServiceName", "ServiceAddr", "CheckConfig"})
_KK_ETCD_GO_CHECK_FIELDS = frozenset({"Type", "Timeout", "Interval", "Addr"})
_NANOS = 1_000_000_000


class InvalidRegistration(ValueError):
    """A stored registration that cannot be checked; the message says why."""


def kk_etcd_go_can_read(reg: Registration) -> bool:
    """Whether kk_etcd_go can have this instance: Http or Grpc, checked over Http or Grpc."""
    return reg.type in KK_ETCD_GO_TYPES and reg.check.type in KK_ETCD_GO_TYPES


# Writing ------------------------------------------------------------------------------------------


def _kk_etcd_go_fields(
    reg: Registration, kind: Callable[[ServiceType], object], duration: Callable[[float], object]
) -> dict[str, Any]:
    """``PBServiceRegistration``'s fields, in its declaration order, with enums and durations encoded
    as the writer at hand encodes them."""
    check = reg.check
    return {
        "ServiceType": kind(reg.type),
        "ServiceName": reg.name,
        "ServiceAddr": reg.addr,
        "CheckConfig": {
            "Type": kind(check.type),
            "Timeout": duration(check.timeout),
            "Interval": duration(check.interval),
            "Addr": check.addr,
        },
    }


def registration_to_json(reg: Registration) -> str:
    """The value of kk_etcd_go's key: what its ``protojson.Marshal`` writes (only for kk_etcd_go_can_read)."""
    if not kk_etcd_go_can_read(reg):
        raise ValueError(f"kk_etcd_go cannot read a {reg.type} instance checked over {reg.check.type}")
    document = _kk_etcd_go_fields(reg, WIRE_TYPES.__getitem__, format_duration)  # enum names, "1.500s"
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def extension_to_json(reg: Registration) -> str:
    """The value of our key: the whole registration, kk_etcd_go's fields and ours."""
    check = reg.check
    document = _kk_etcd_go_fields(reg, WIRE_TYPES.__getitem__, format_duration)
    config = document["CheckConfig"]
    config["SuccessBeforePassing"] = check.success_before_passing
    config["FailuresBeforeCritical"] = check.failures_before_critical
    if check.grpc_service:
        config["GrpcService"] = check.grpc_service
    if check.tls:
        config["Tls"] = True
    if check.ca_file:
        config["CaFile"] = check.ca_file
    if check.deregister_critical_after is not None:
        config["DeregisterCriticalAfter"] = format_duration(check.deregister_critical_after)
    document |= {"Metadata": reg.metadata, "Weight": reg.weight}
    return json.dumps(document, separators=(",", ":"))


# Reading ------------------------------------------------------------------------------------------


def registration_from_documents(key: InstanceKey, base: bytes | None, extension: bytes | None) -> Registration | None:
    """The registration of ``key`` from kk_etcd_go's value (``base``) and ours (``extension``), joined as
    the module docstring says; None when only a leftover extension is there. InvalidRegistration says
    what is wrong."""
    documents = [
        _document(raw, what) for raw, what in ((extension, "extension"), (base, "registration")) if raw is not None
    ]
    if not documents:
        return None
    merged = _merged(documents)
    reg = _registration(merged, key)
    if base is None and kk_etcd_go_can_read(reg):
        return None  # kk_etcd_go deleted its key: the instance is gone
    return reg


def is_kk_etcd_go_document(raw: bytes) -> bool:
    """Whether a value at kk_etcd_go's key is one its strict protojson reader accepts (as far as its
    shape goes): only its fields, Http or Grpc, durations as strings. Anything else there is ours, from
    an older version, and is rewritten."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(document, dict) or not document.keys() <= _KK_ETCD_GO_FIELDS:
        return False
    config = document.get("CheckConfig", {})
    if not isinstance(config, dict) or not config.keys() <= _KK_ETCD_GO_CHECK_FIELDS:
        return False
    types = (document.get("ServiceType"), config.get("Type"))
    durations = (config.get("Timeout", ""), config.get("Interval", ""))
    return all(_kk_etcd_go_type(t) for t in types) and all(isinstance(d, str) for d in durations)


def _kk_etcd_go_type(value: object) -> bool:
    return value in ("Http", "Grpc") or (isinstance(value, int) and not isinstance(value, bool) and value in (1, 2))


def _document(raw: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRegistration(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRegistration(f"{what} must be a JSON object")
    if not isinstance(document.get("CheckConfig") or {}, dict):
        raise InvalidRegistration(f"CheckConfig of the {what} must be a JSON object")
    return document


def _merged(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Later documents' fields over earlier ones', ``CheckConfig`` field by field."""
    merged: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for document in documents:
        merged.update(document)
        config.update(document.get("CheckConfig") or {})
    merged["CheckConfig"] = config
    return merged


def _registration(document: dict[str, Any], key: InstanceKey) -> Registration:
    config = document["CheckConfig"]
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


# Statuses -----------------------------------------------------------------------------------------


def status_to_json(status: HealthStatus) -> str:
    return status.model_dump_json()


def status_from_json(raw: bytes) -> HealthStatus | None:
    """None for a status document we cannot read (it is rewritten at the next transition)."""
    try:
        return HealthStatus.model_validate_json(raw)
    except ValidationError:
        return None


# The alive document -------------------------------------------------------------------------------


def alive_entry_json(reg: Registration) -> str | None:
    """One instance in kk_etcd_go's alive document, as Go's encoding/json writes a ``PBServiceRegistration``
    (fields in declaration order, zero values left out); None for an instance kk_etcd_go cannot have."""
    if not kk_etcd_go_can_read(reg):
        return None
    return _go_json(_kk_etcd_go_fields(reg, _KK_ETCD_GO_ENUMS.__getitem__, _go_duration))  # numbers, Duration


def _go_duration(seconds: float) -> dict[str, int]:
    """``durationpb.Duration`` through encoding/json: ``seconds`` and ``nanos``, each left out when 0."""
    whole, nanos = divmod(round(seconds * _NANOS), _NANOS)
    return {name: value for name, value in (("seconds", whole), ("nanos", nanos)) if value}


def _go_json(value: object) -> str:
    """JSON as Go's encoding/json writes it: compact, UTF-8, and ``<``, ``>``, ``&``, U+2028, U+2029
    escaped (they can only occur inside strings, so replacing them everywhere is safe)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


def alive_document(alive: Iterable[tuple[InstanceKey, str]]) -> str:
    """kk_etcd_go's alive document, ``{"<Type>-<name>": [entry, ...]}``, keys sorted as Go sorts a map's.

    Joined from each instance's ``alive_entry_json``, not encoded again: the hub rebuilds this for
    every batch of transitions, over every alive instance.
    """
    groups: dict[str, list[str]] = {}
    for key, entry in sorted(alive, key=lambda item: (item[0].type, item[0].name, item[0].addr)):
        groups.setdefault(f"{WIRE_TYPES[key.type]}-{key.name}", []).append(entry)
    ordered = sorted(groups.items(), key=lambda group: group[0].encode())
    return "{" + ",".join(f"{_go_json(group)}:[{','.join(entries)}]" for group, entries in ordered) + "}"


# etcd naming endpoints ---------------------------------------------------------------------------
# etcd's Go endpoints.Manager writes ``{"Op": 0, "Addr": ..., "Metadata": ...}`` (internal.Update). Op 0
# is endpoints.Add; Delete (1) is never stored, a deleted key is the delete. Go's resolver
# (``etcd:///<target>``) dials ``Addr``, not the key.
ENDPOINT_ADD = 0


def endpoint_to_json(addr: str) -> str:
    """An endpoint as every Go resolver version accepts it: ``Metadata`` null (see the module docstring)."""
    return json.dumps({"Op": ENDPOINT_ADD, "Addr": addr, "Metadata": None}, separators=(",", ":"))


def endpoint_addr_from_json(raw: bytes) -> str | None:
    """The address an endpoint value names (whatever its Op: Go's resolver takes every stored value as an
    Add); None for a value that is not an endpoint."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    addr = document.get("Addr") if isinstance(document, dict) else None
    return addr if isinstance(addr, str) and addr else None
