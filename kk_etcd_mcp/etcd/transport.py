"""EtcdTransport: the channel to etcd, etcd3aio's services on it, and the auth token; the adapter's own API.

``EtcdClient`` (KV, leases, watch), ``EtcdAuth``, ``EtcdMaintenance`` and ``LeaseSession`` share one
transport (``EtcdClient.transport``). Only modules of ``kk_etcd_mcp.etcd`` use it; other packages use
those classes. What it offers them:

- ``call(action, subject, fn)``: one unary call, authenticated lazily (so the server starts while etcd
  is down and recovers when it comes back), authenticated again once when the token expired, bounded by
  the request timeout (counted while the event loop runs: ``grpc_await``), failures mapped onto
  ``kk_etcd_mcp.errors`` (``map_error``);
- ``kv``: etcd's KV service on our own HTTP/2 channel, read on the event loop (``kv_channel.py``);
- ``services``: etcd3aio's public service classes (Lease, Auth, Maintenance, Cluster) on the channel;
- ``channel``, ``stream_metadata()``, ``forget_token()``: for the streams etcd3aio does not drive the
  way we need (watch, lease keepalive, snapshot: see their modules), opened with its generated stubs;
- ``member_channel(url)``: a channel of its own to one member, with the same TLS.

The channel comes from etcd3aio's ``ConnectionManager.get_channel`` (``connection.ChannelFactory``), and
the TLS files are read when the transport opens, in a worker thread: never on the event loop.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import grpc
from etcd3aio import EtcdError
from etcd3aio.auth import AuthService
from etcd3aio.cluster import ClusterService
from etcd3aio.lease import LeaseService
from etcd3aio.maintenance import MaintenanceService

from .. import metrics
from ..errors import InvalidArgumentError, KkEtcdError
from ..grpc_await import await_grpc, await_within
from ..h2grpc.unary import CallError, UnaryChannel
from .connection import ChannelFactory, system_ca_certificates
from .endpoint import parse_endpoint
from .errors import grpc_details, is_token_problem, map_error
from .kv_channel import MAX_ANSWER, WINDOW, KvChannel
from .types import Endpoint

log = logging.getLogger(__name__)

T = TypeVar("T")
Q = TypeVar("Q")
Metadata = tuple[tuple[str, str], ...]

RPC_FAILURES = (EtcdError, grpc.aio.AioRpcError, CallError, TimeoutError)
_MAX_ATTEMPTS = 3  # etcd3aio retries transient failures itself; our timeout bounds all attempts together


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The TLS files as configured: the CA that signed etcd's certificate, and a client certificate."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def load(self, *, tls_endpoints: bool) -> TlsMaterial:
        """Read the files (blocking: call it in a worker thread); without ca_file, an https:// endpoint
        is verified by the system's CAs. InvalidArgumentError when a file cannot be read."""
        ca_cert = _read(self.ca_file)
        if ca_cert is None and tls_endpoints:
            ca_cert = system_ca_certificates()
            if ca_cert is None:
                raise InvalidArgumentError(
                    "no trusted CA certificates found on this system for the https:// etcd endpoint; "
                    "set ca_file (KK_ETCD_CA_FILE) to the CA that signed etcd's certificate"
                )
        material = TlsMaterial(ca_cert, _read(self.cert_file), _read(self.key_file))
        if ca_cert is None:
            return material
        return replace(material, context=self._context(ca_cert))

    def _context(self, ca_cert: bytes) -> ssl.SSLContext:
        """The TLS context of the KV channel: ALPN h2, ``ca_cert`` trusted, our certificate if any."""
        try:
            context = ssl.create_default_context(cadata=ca_cert.decode("ascii", "replace"))
        except ssl.SSLError as exc:
            where = self.ca_file or "the system"
            raise InvalidArgumentError(
                f"cannot use the CA certificates of {where}: {exc.reason or exc}; "
                "set ca_file (KK_ETCD_CA_FILE) to the PEM file of the CA that signed etcd's certificate"
            ) from None
        if self.cert_file is not None:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except ssl.SSLError as exc:
                raise InvalidArgumentError(
                    f"cannot use cert_file {self.cert_file} with key_file {self.key_file}: {exc.reason or exc}; "
                    "they must be the client certificate (PEM) and its own private key"
                ) from None
        context.set_alpn_protocols(["h2"])
        return context


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The TLS files' contents; no ``ca_cert`` means a plain-text channel. ``context``: the same for ssl."""

    ca_cert: bytes | None
    cert_chain: bytes | None
    cert_key: bytes | None
    context: ssl.SSLContext | None = None

    def channel(self, factory: ChannelFactory, server_name: str | None) -> Any:
        """A channel from ``factory``: TLS with these files, or plain text without a CA."""
        if self.ca_cert is None:
            if self.cert_chain is not None or self.cert_key is not None:
                raise InvalidArgumentError(
                    "cert_file and key_file need TLS: use https:// etcd endpoints (and ca_file for a private CA)"
                )
            return factory.get_channel()
        return factory.get_channel(
            ca_cert=self.ca_cert, cert_chain=self.cert_chain, cert_key=self.cert_key, tls_server_name=server_name
        )


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read TLS file {path}: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class EtcdServices:
    """etcd3aio's service facades on one channel; each sends the token it was last given."""

    lease: LeaseService
    auth: AuthService
    maintenance: MaintenanceService
    cluster: ClusterService

    @classmethod
    def on(cls, channel: Any) -> EtcdServices:
        return cls(
            lease=LeaseService(channel, max_attempts=_MAX_ATTEMPTS),
            auth=AuthService(channel, max_attempts=_MAX_ATTEMPTS),
            maintenance=MaintenanceService(channel, max_attempts=_MAX_ATTEMPTS),
            cluster=ClusterService(channel, max_attempts=_MAX_ATTEMPTS),
        )

    def set_token(self, token: str | None) -> None:
        for service in (self.lease, self.auth, self.maintenance, self.cluster):
            service.set_token(token)


class EtcdTransport:
    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        username: str | None,
        password: str | None,
        tls: TlsFiles,
        request_timeout: float,
    ) -> None:
        self.endpoints = ",".join(e.url for e in endpoints)
        self.username = username
        self.request_timeout = request_timeout
        self._password = password
        self._parsed = list(endpoints)
        self._tls_files = tls
        self._factory = ChannelFactory(self._parsed)
        self._tls: TlsMaterial | None = None
        self._channel: Any = None
        self._services: EtcdServices | None = None
        self._kv: KvChannel | None = None
        self._token: str | None = None  # None: not authenticated yet; "": auth is off in etcd
        self._auth_lock = anyio.Lock()

    # Lifetime ---------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Read the TLS files and create the channel; nothing is sent to etcd yet."""
        tls_endpoints = any(e.tls for e in self._parsed)
        self._tls = await anyio.to_thread.run_sync(lambda: self._tls_files.load(tls_endpoints=tls_endpoints))
        # The name the server certificate must carry is the host as written: parse_endpoint turns
        # "localhost" into 127.0.0.1 for the channel, but a certificate may name only "localhost".
        server_name = urlsplit(self._parsed[0].url).hostname
        self._channel = self._tls.channel(self._factory, server_name)
        self._services = EtcdServices.on(self._channel)
        addresses = [(e.host, e.port) for e in self._parsed]
        self._kv = KvChannel(
            UnaryChannel(
                addresses,
                tls=self._tls.context,
                server_name=server_name if self._tls.context else None,
                max_answer=MAX_ANSWER,
                window=WINDOW,
                user_agent="kk-etcd-mcp",
            )
        )
        self._services.set_token(self._token or None)

    async def close(self) -> None:
        channel, self._channel, self._services = self._channel, None, None
        kv, self._kv = self._kv, None
        if kv is not None:
            await kv.close()
        if channel is not None:
            with anyio.CancelScope(shield=True):  # also on shutdown by cancellation
                await channel.close()

    @property
    def services(self) -> EtcdServices:
        if self._services is None:
            raise RuntimeError("EtcdClient is not open: use 'async with EtcdClient(...)'")
        return self._services

    @property
    def kv(self) -> KvChannel:
        """etcd's KV requests on our own channel (``kv_channel.py``)."""
        if self._kv is None:
            raise RuntimeError("EtcdClient is not open: use 'async with EtcdClient(...)'")
        return self._kv

    @property
    def channel(self) -> Any:
        """The grpc.aio channel, for streams opened with etcd3aio's generated stubs."""
        if self._channel is None:
            raise RuntimeError("EtcdClient is not open: use 'async with EtcdClient(...)'")
        return self._channel

    # Authentication -----------------------------------------------------------------------------------

    @property
    def auth_enabled(self) -> bool:
        """Whether the last authentication got a token (False before the first one and when auth is off)."""
        return bool(self._token)

    async def authenticate(self) -> None:
        """Get a token for the configured user unless one is held (or etcd said auth is off)."""
        if self.username is None or self._token is not None:
            return
        async with self._auth_lock:
            if self._token is not None:
                return
            try:
                authenticate = self.services.auth.authenticate(self.username, self._password or "")
                resp = await await_grpc(authenticate, within=self.request_timeout)
            except RPC_FAILURES as exc:
                if "authentication is not enabled" in grpc_details(exc):
                    self._token = ""
                    return
                raise self.map_error(exc, "authenticate as", self.username) from exc
            self._set_token(resp.token)

    def forget_token(self) -> None:
        """The token was refused (expired, or etcd restarted): authenticate again before the next call."""
        self._set_token(None)

    async def reauthenticate(self) -> None:
        self.forget_token()
        await self.authenticate()

    @property
    def token(self) -> str | None:
        """The token calls send now (None: none)."""
        return self._token or None

    def metadata(self) -> Metadata:
        """What a stream sends to authenticate: the token, if any."""
        return (("token", self._token),) if self._token else ()

    async def stream_metadata(self) -> Metadata | None:
        """Authenticate if need be; the metadata a new stream sends (None: none)."""
        await self.authenticate()
        return self.metadata() or None

    def _set_token(self, token: str | None) -> None:
        self._token = token
        if self._services is not None:
            self._services.set_token(token)

    # Calls --------------------------------------------------------------------------------------------

    async def call(
        self,
        action: str,
        subject: str,
        fn: Callable[[], Awaitable[T]],
        *,
        endpoints: str | None = None,
        ours: bool = False,
    ) -> T:
        """``fn`` authenticated, retried once on an expired token, failures mapped; ``endpoints``
        names where ``fn`` went when that is not the configured endpoints (one member's own URL);
        ``ours``: ``fn`` is a request of our KV channel, awaited in this task (``await_within``)."""
        wait = await_within if ours else await_grpc
        for attempt in (1, 2):
            await self.authenticate()
            try:
                return await wait(fn(), self.request_timeout)
            except RPC_FAILURES as exc:
                if attempt == 1 and self.username is not None and is_token_problem(exc):
                    log.info("etcd token expired or missing; authenticating again")
                    self.forget_token()
                    continue
                raise self.map_error(exc, action, subject, endpoints=endpoints) from exc
        raise AssertionError("unreachable")

    async def kv_call(self, action: str, subject: str, method: Callable[[Q, Metadata], Awaitable[T]], request: Q) -> T:
        """``method(request)`` of the KV channel (``self.kv``) through ``call``, with the token, in this task."""
        return await self.call(action, subject, lambda: method(request, self.metadata()), ours=True)

    def map_error(self, exc: BaseException, action: str, subject: str, *, endpoints: str | None = None) -> KkEtcdError:
        """``exc`` (an etcd3aio, grpc or timeout failure) as a KkEtcdError naming what was attempted."""
        error = map_error(
            exc, endpoints=endpoints or self.endpoints, user=self.username, action=action, subject=subject
        )
        metrics.ETCD_ERRORS.labels(type(error).__name__).inc()
        return error

    async def member_channel(self, client_url: str) -> Any:
        """A new channel to the member at ``client_url`` alone (the caller closes it), with this client's
        TLS files; InvalidArgumentError for a URL no channel can be made to."""
        try:
            endpoint = parse_endpoint(client_url)
        except ValueError as exc:  # e.g. a unix:// URL, which etcd may advertise
            raise InvalidArgumentError(f"cannot ask the member at {client_url}: {exc}") from None
        factory = ChannelFactory([endpoint])
        if not endpoint.tls:
            return factory.get_channel()
        own = self._tls or TlsMaterial(None, None, None)
        ca_cert = own.ca_cert or await anyio.to_thread.run_sync(system_ca_certificates)
        if ca_cert is None:
            raise InvalidArgumentError(
                f"member at {client_url} speaks https, but no ca_file is configured and the system has no CAs"
            )
        tls = TlsMaterial(ca_cert, own.cert_chain, own.cert_key)
        return tls.channel(factory, urlsplit(endpoint.url).hostname)
