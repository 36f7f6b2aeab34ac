"""The gRPC channel setup for etcd (endpoints are parsed in ``endpoint.py``)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path

from etcd3aio.connections import ConnectionManager

from .types import Endpoint

# gRPC's default reconnect backoff grows to 120 s: etcd coming back would go unnoticed for minutes.
_OUR_OPTIONS: list[tuple[str, str | int | bool]] = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # Keepalive pings only while a call is open (a watch, a lease keepalive): etcd's default policy
    # answers pings on an idle connection with GOAWAY "too_many_pings" (seen by bench/soak.py).
    ("grpc.keepalive_permit_without_calls", False),
]


# Where the usual systems keep their trusted CA bundle (Debian/Ubuntu, RHEL/Fedora, macOS/Alpine, SUSE),
# tried after what SSL_CERT_FILE and OpenSSL's own default name.
_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
)


def system_ca_certificates() -> bytes | None:
    """The system's trusted CA certificates (PEM), for https:// endpoints without ca_file; None if none found.

    gRPC would otherwise trust only the roots bundled with it, not the ones the system (or the
    administrator, through SSL_CERT_FILE) trusts.
    """
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, *_CA_BUNDLES):
        if candidate and Path(candidate).is_file():
            try:
                return Path(candidate).read_bytes()
            except OSError:
                continue
    return None


def _ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def grpc_target(endpoints: Sequence[Endpoint]) -> str:
    """A gRPC target that round-robins over every endpoint.

    IP literals use the ``ipv4:``/``ipv6:`` schemes; one host name uses ``dns:`` (re-resolved on
    reconnect); several host names are resolved once here, since one target cannot mix schemes.
    """
    versions = {_ip_version(e.host) for e in endpoints}
    if versions == {4}:
        return "ipv4:" + ",".join(e.address for e in endpoints)
    if versions == {6}:
        return "ipv6:" + ",".join(e.address for e in endpoints)
    if len(endpoints) == 1:
        return f"dns:///{endpoints[0].address}"
    addresses = []
    for e in endpoints:
        if _ip_version(e.host) == 4:
            addresses.append(e.address)
            continue
        infos = socket.getaddrinfo(e.host, e.port, socket.AF_INET, socket.SOCK_STREAM)
        addresses.append(f"{infos[0][4][0]}:{e.port}")
    return "ipv4:" + ",".join(addresses)


class ChannelFactory(ConnectionManager):  # type: ignore[misc]  # etcd3aio is not type-checked (follow_imports=skip)
    """etcd3aio's ConnectionManager with host-name targets and a short reconnect backoff."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        super().__init__([e.address for e in endpoints])
        self.target = grpc_target(endpoints)
        ours = {name for name, _ in _OUR_OPTIONS}
        inherited = [option for option in self.grpc_options if option[0] not in ours]
        self.grpc_options: list[tuple[str, str | int | bool]] = [*inherited, *_OUR_OPTIONS]
