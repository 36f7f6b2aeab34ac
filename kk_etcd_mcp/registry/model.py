"""The registry's shared language: registrations, check specs and health statuses (pydantic).

Defaults and limits follow kk_etcd_go where it has them (check path /KKHealthCheck, timeout >= 1 s,
interval >= timeout) and Consul where it does not (thresholds, deregister_critical_after).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ..errors import InvalidArgumentError
from .durations import parse_duration

ServiceType = Literal["http", "grpc", "tcp"]
Status = Literal["passing", "warning", "critical"]
ALIVE_STATUSES: frozenset[Status] = frozenset({"passing", "warning"})
CheckedAtMeaning = Literal["latest_check", "last_change"]

HEALTH_CHECK_PATH = "/KKHealthCheck"  # kk_etcd_go's default HTTP check path
MIN_TIMEOUT = 1.0
# A check that may wait longer says nothing useful, and service_check/service_pick would wait that long.
MAX_TIMEOUT = 60.0
MAX_INTERVAL = 86400.0  # a day

Seconds = Annotated[float, BeforeValidator(parse_duration)]
_ADDR = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+):(\d{1,5})$")


def check_name(name: str, what: str = "service name") -> str:
    """Names become etcd key segments: '/' or whitespace would split or corrupt the key."""
    if not name:
        raise InvalidArgumentError(f"{what} is empty")
    if "/" in name or any(ch.isspace() for ch in name):
        raise InvalidArgumentError(f"{what} {name!r} must not contain '/' or whitespace")
    return name


def check_addr(addr: str) -> str:
    check_name(addr, "address")
    match = _ADDR.match(addr)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise InvalidArgumentError(f"address {addr!r} must be host:port, e.g. 10.0.0.5:8080 or [::1]:8080")
    return addr


class CheckOptions(BaseModel):
    """How to check an instance; every field may be left out. Durations: seconds or '5s', '500ms'."""

    model_config = ConfigDict(extra="forbid")

    type: ServiceType | None = Field(default=None, description="Probe kind; defaults to the service's type.")
    addr: str | None = Field(
        default=None,
        description="Probe target: a URL for http (default http://<addr>/KKHealthCheck), host:port otherwise.",
    )
    timeout: Seconds | None = Field(default=None, description="Per check, at least 1 s (default 5 s).")
    interval: Seconds | None = Field(default=None, description="Between checks, at least timeout (default 10 s).")
    grpc_service: str | None = Field(default=None, description="Service name for grpc.health.v1 ('' = server).")
    tls: bool | None = Field(default=None, description="Probe over TLS (https / secure gRPC channel).")
    ca_file: str | None = Field(default=None, description="CA bundle to verify the target with TLS.")
    success_before_passing: int | None = Field(default=None, ge=1, description="Default 1.")
    failures_before_critical: int | None = Field(default=None, ge=1, description="Default 3.")
    deregister_critical_after: Seconds | None = Field(
        default=None, description="Delete the registration once critical this long (default: never)."
    )


class CheckSpec(BaseModel):
    """A fully resolved check; two equal specs mean the check loop need not restart."""

    model_config = ConfigDict(frozen=True)

    type: ServiceType
    addr: str
    timeout: float = 5.0
    interval: float = 10.0
    grpc_service: str = ""
    tls: bool = False
    ca_file: str | None = None
    success_before_passing: int = 1
    failures_before_critical: int = 3
    deregister_critical_after: float | None = None

    @model_validator(mode="after")
    def _limits(self) -> CheckSpec:
        if self.timeout < MIN_TIMEOUT:
            raise ValueError(f"check timeout must be at least {MIN_TIMEOUT:g}s, got {self.timeout:g}s")
        if self.timeout > MAX_TIMEOUT:
            raise ValueError(f"check timeout must be at most {MAX_TIMEOUT:g}s, got {self.timeout:g}s")
        if self.interval > MAX_INTERVAL:
            raise ValueError(f"check interval must be at most {MAX_INTERVAL:g}s (a day), got {self.interval:g}s")
        if self.interval < self.timeout:
            raise ValueError(f"check interval ({self.interval:g}s) must be at least the timeout ({self.timeout:g}s)")
        if self.deregister_critical_after is not None and self.deregister_critical_after <= 0:
            raise ValueError("deregister_critical_after must be positive")
        return self


def default_check_addr(service_type: ServiceType, addr: str, tls: bool = False) -> str:
    if service_type == "http":
        return f"{'https' if tls else 'http'}://{addr}{HEALTH_CHECK_PATH}"
    return addr


def resolve_check(service_type: ServiceType, addr: str, options: CheckOptions | None) -> CheckSpec:
    """Fill the defaults of ``options``; InvalidArgumentError names what is wrong."""
    given = options.model_dump(exclude_none=True) if options is not None else {}
    kind: ServiceType = given.pop("type", service_type)
    tls = bool(given.get("tls", False))
    given.setdefault("addr", default_check_addr(kind, addr, tls))
    try:
        return CheckSpec(type=kind, **given)
    except ValueError as exc:
        raise InvalidArgumentError(f"invalid check for {addr}: {validation_reason(exc)}") from None


def validation_reason(exc: Exception) -> str:
    """The first problem pydantic found, as ``field: message`` (the message alone for model-level checks)."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


class Registration(BaseModel):
    """One registered instance; (type, name, addr) identifies it."""

    model_config = ConfigDict(frozen=True)

    type: ServiceType
    name: str
    addr: str
    check: CheckSpec
    metadata: dict[str, str] = Field(default_factory=dict)
    weight: int = Field(default=1, ge=1)

    @property
    def instance_id(self) -> str:
        return f"{self.type}/{self.name}/{self.addr}"


class HealthStatus(BaseModel):
    """What ``kk_service/status/...`` holds; written only when ``status`` changes."""

    status: Status
    output: str = ""
    since: datetime = Field(description="When the instance entered this status.")
    checked_at: datetime = Field(description="Time of the check that set it (or the latest check, when known).")
    checker: str = Field(default="", description="The hub that checked it.")


class Instance(BaseModel):
    """A registration with its health, as tools and the SDK show it."""

    type: ServiceType
    name: str
    addr: str
    status: Status
    output: str = ""
    since: datetime | None = None
    checked_at: datetime | None = Field(default=None, description="See checked_at_is.")
    checked_at_is: CheckedAtMeaning = Field(
        default="last_change",
        description=(
            "latest_check: this server's hub leads the checking, and checked_at is its latest check. last_change: "
            "read from etcd, where the leading hub writes a status only when it changes (not on every check), so "
            "checked_at is the time of the check that set this status; the leader still checks every interval."
        ),
    )
    check: CheckSpec | None = Field(default=None, description="None when the stored registration is invalid.")
    metadata: dict[str, str] = Field(default_factory=dict)
    weight: int = 1
    lease: int = Field(default=0, description="Lease the registration lives on (0: persistent).")
