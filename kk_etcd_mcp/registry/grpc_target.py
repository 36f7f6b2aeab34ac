"""One gRPC target over many instances, for Python clients of the hub's endpoint keys.

Go clients resolve ``etcd:///<root>endpoints/<name>/`` with etcd's resolver and follow every change.
Python's grpc has no pluggable resolver, so the SDK turns the endpoint list into a static target,
``ipv4:a:1,b:2`` (or ``ipv6:``), which grpc's ``round_robin`` policy spreads calls over. Host names are
resolved here, once: those targets take IP literals only. Such a target names no host, so with TLS
the name certificates are checked against is set explicitly (``balanced_options``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence
from typing import Any

import anyio

from ..errors import InvalidArgumentError

log = logging.getLogger(__name__)

ROUND_ROBIN = ("grpc.lb_policy_name", "round_robin")
_SERVER_NAME_KEYS = ("grpc.ssl_target_name_override", "grpc.default_authority")


def balanced_options(options: Sequence[tuple[str, Any]], addrs: Sequence[str], tls: bool) -> list[tuple[str, Any]]:
    """``options`` plus round robin and, with TLS, the host of ``addrs`` as the name to verify."""
    given = {key for key, _ in options}
    added = [] if ROUND_ROBIN[0] in given else [ROUND_ROBIN]
    if tls and not given.intersection(_SERVER_NAME_KEYS):
        hosts = sorted({addr.rpartition(":")[0].strip("[]") for addr in addrs})
        if len(hosts) > 1:
            raise InvalidArgumentError(
                f"a balanced TLS channel checks one server name, and the instances are on {', '.join(hosts)}: "
                'pass options=[("grpc.ssl_target_name_override", "<the name their certificates share>")]'
            )
        added.append((_SERVER_NAME_KEYS[0], hosts[0]))
    return [*options, *added]


async def static_target(addrs: Sequence[str]) -> str | None:
    """``ipv4:`` (preferred) or ``ipv6:`` target over ``addrs`` (``host:port``); None when none resolves."""
    found: dict[int, list[str]] = {4: [], 6: []}
    for addr in addrs:
        host, _, port = addr.rpartition(":")
        for ip in await _ips(host.strip("[]"), int(port)):
            entry = f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}"
            if entry not in found[ip.version]:
                found[ip.version].append(entry)
    family = 4 if found[4] else 6
    if not found[family]:
        return None
    if family == 4 and found[6]:  # one target takes one address family
        log.warning("gRPC target over IPv4 only: leaving out %s", ", ".join(found[6]))
    return f"ipv{family}:{','.join(found[family])}"


async def _ips(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:  # that instance is unreachable to us now; the others are still worth a channel
        log.warning("cannot resolve %s: %s", host, error)
        return []
    return [ipaddress.ip_address(info[4][0]) for info in infos]
