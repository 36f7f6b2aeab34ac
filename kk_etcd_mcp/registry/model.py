"""The registry's shared language: registrations, check specs and health statuses (pydantic).

Defaults and limits follow kk_etcd_go where it has them (check path /KKHealthCheck, timeout >= 1 s,
interval >= timeout) and Consul where it does not (thresholds, deregister_critical_after).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

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
MAX_THRESHOLD = 1000  # consecutive results before a status changes
MAX_WEIGHT = 1_000_000

Seconds = Annotated[float, BeforeValidator(parse_duration)]

# Names and addresses become etcd key segments, gRPC resolver targets, URLs and log lines, and are read by
# kk_etcd_go too: a registration's name is 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit
# (ASCII only, so no look-alike letters from other scripts), and its address host:port, where the host is
# an IPv4 address, an [IPv6] address or a DNS name (labels of 1-63 letters, digits, '-' or '_', not
# starting or ending with '-'; 253 characters in all).
MAX_NAME_LENGTH = 128
MAX_HOST_LENGTH = 253
MAX_LOOKUP_LENGTH = 4096  # a lookup may name a stored registration that breaks today's rules, to remove it
MAX_CHECK_ADDR_LENGTH = 2048
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
_GRPC_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")
NAME_RULE = f"1-{MAX_NAME_LENGTH} characters of A-Z, a-z, 0-9, '.', '_', '-', starting with a letter or digit"


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 80 else f"{text[:60]!r}... ({len(text)} characters)"


def check_name(name: str, what: str = "service name") -> str:
    """A name or address to look up: it must be able to be a key segment ('/' or whitespace would split
    or corrupt the key). New registrations follow the stricter ``check_service_name`` and ``check_addr``."""
    if not name:
        raise InvalidArgumentError(f"{what} is empty")
    if len(name) > MAX_LOOKUP_LENGTH:
        raise InvalidArgumentError(f"{what} is {len(name)} characters long; at most {MAX_LOOKUP_LENGTH} are allowed")
    if "/" in name or any(ch.isspace() for ch in name):
        raise InvalidArgumentError(f"{what} {_shown(name)} must not contain '/' or whitespace")
    return name


def service_name_problem(name: str) -> str | None:
    if len(name) > MAX_NAME_LENGTH or not _SERVICE_NAME.fullmatch(name):
        return f"service name {_shown(name)} is not allowed: use {NAME_RULE}"
    return None


def check_service_name(name: str) -> str:
    """The name of a new registration (see the rule above); InvalidArgumentError says what is allowed."""
    problem = service_name_problem(name)
    if problem is not None:
        raise InvalidArgumentError(problem)
    return name


def host_problem(host: str) -> str | None:
    """Why ``host`` (bare, or an IPv6 address in brackets) is not an IP address or DNS name; None when it is."""
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"host {_shown(host)} is not a valid IPv6 address"
        return None
    if not host:
        return "the host is empty"
    if len(host) > MAX_HOST_LENGTH:
        return f"host {_shown(host)} is longer than {MAX_HOST_LENGTH} characters"
    labels = host.removesuffix(".").split(".")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"host {_shown(host)} is not a valid IPv4 address"
        return None
    for label in labels:
        if len(label) > 63 or not _LABEL.fullmatch(label):
            return (
                f"host {_shown(host)} is not a DNS name: each dot-separated label must be 1-63 letters, digits, "
                "'-' or '_', not starting or ending with '-' (an IPv6 address goes in brackets: [::1]:8080)"
            )
    return None


def addr_problem(addr: str) -> str | None:
    """Why ``addr`` is not host:port; None when it is."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or len(port) > 5 or not 0 < int(port) < 65536:
        return f"address {_shown(addr)} must be host:port with a port from 1 to 65535, e.g. 10.0.0.5:8080 or [::1]:8080"
    problem = host_problem(host)
    return f"address {_shown(addr)}: {problem}" if problem else None


def check_addr(addr: str) -> str:
    problem = addr_problem(addr)
    if problem is not None:
        raise InvalidArgumentError(problem)
    return addr


def is_grpc_target_uri(target: str) -> bool:
    """A gRPC target URI (``dns:///host:port``, ``unix:path``, ...) rather than host:port."""
    return "://" in target or target.startswith(_GRPC_SCHEMES)


def check_target_problem(kind: ServiceType, target: str) -> str | None:
    """Why a check's target (``check.addr``) is unusable for ``kind``; None when it is usable."""
    if len(target) > MAX_CHECK_ADDR_LENGTH:
        return f"check address is {len(target)} characters long; at most {MAX_CHECK_ADDR_LENGTH} are allowed"
    if not target.isprintable() or any(ch.isspace() for ch in target):
        return f"check address {_shown(target)} must not contain whitespace or control characters"
    if kind == "http":
        parts = urlsplit(target)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            return f"check address {_shown(target)} must be an http:// or https:// URL"
        try:
            parts.port  # noqa: B018 - it raises for a port that is not a number from 0 to 65535
        except ValueError:
            return f"check address {_shown(target)} has an invalid port"
        host = parts.netloc.rpartition("@")[2]
        host = host.rpartition(":")[0] if parts.port is not None else host
        problem = host_problem(host)
        return f"check address {_shown(target)}: {problem}" if problem else None
    if kind == "grpc" and is_grpc_target_uri(target):
        return None  # a gRPC target URI (dns:///host:port, unix:path): gRPC parses it and reports problems
    return addr_problem(target)


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
    success_before_passing: int | None = Field(default=None, ge=1, le=MAX_THRESHOLD, description="Default 1.")
    failures_before_critical: int | None = Field(default=None, ge=1, le=MAX_THRESHOLD, description="Default 3.")
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
    success_before_passing: int = Field(default=1, ge=1, le=MAX_THRESHOLD)
    failures_before_critical: int = Field(default=3, ge=1, le=MAX_THRESHOLD)
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
        problem = check_target_problem(self.type, self.addr)
        if problem is not None:
            raise ValueError(problem)
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
    weight: int = Field(default=1, ge=1, le=MAX_WEIGHT)

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
            "latest_check: this server's hub checks this instance, and checked_at is its latest check. last_change: "
            "read from etcd, where the checking hub writes a status only when it changes (not on every check), so "
            "checked_at is the time of the check that set this status; the hub still checks every interval."
        ),
    )
    checked_by: str | None = Field(
        default=None, description="The hub that checks this instance (null: no hub has checked it yet)."
    )
    check: CheckSpec | None = Field(default=None, description="None when the stored registration is invalid.")
    metadata: dict[str, str] = Field(default_factory=dict)
    weight: int = 1
    lease: int = Field(default=0, description="Lease the registration lives on (0: persistent).")
