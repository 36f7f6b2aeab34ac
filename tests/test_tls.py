"""TLS against a real etcd that requires client certificates (mutual TLS), with certificates from trustme.

One etcd per module serves https on loopback with ``--client-cert-auth``; its peers talk plain http.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import anyio
import pytest
import trustme
from etcd_under_test import binary, is_34
from mcp_helpers import call, served, stdio_client, stop_process
from polling import HANG_GUARD

from kk_etcd_mcp.errors import KkEtcdError, UnavailableError
from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.etcd.embedded import accepts_connections, free_ports
from kk_etcd_mcp.settings import load_settings

pytestmark = pytest.mark.anyio

# Hang guards only: a test fails if a call never returns. No test asserts on elapsed time.
FAIL_TIMEOUT = 2.0  # request timeout of the calls that must fail


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing etcd uses


@dataclass(frozen=True)
class TlsEtcd:
    port: int
    pki: Pki

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def _write_cert(cert: trustme.LeafCert, cert_path: Path, key_path: Path) -> None:
    cert_path.write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_path))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    ca, other_ca = trustme.CA(), trustme.CA()
    pki = Pki(
        ca=base / "ca.pem",
        server_cert=base / "server.pem",
        server_key=base / "server-key.pem",
        client_cert=base / "client.pem",
        client_key=base / "client-key.pem",
        other_ca=base / "other-ca.pem",
    )
    ca.cert_pem.write_to_path(str(pki.ca))
    other_ca.cert_pem.write_to_path(str(pki.other_ca))
    _write_cert(ca.issue_cert("127.0.0.1", "localhost"), pki.server_cert, pki.server_key)
    _write_cert(ca.issue_cert("kk-etcd-mcp-test-client"), pki.client_cert, pki.client_key)
    return pki


def _log_tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        return "(no log)"


@contextmanager
def run_etcd(base: Path, cert: Path, key: Path, client_ca: Path | None) -> Iterator[int]:
    """etcd serving https on a free loopback port (``client_ca``: require client certificates it signed).

    Yields the client port once it accepts TCP connections; stops etcd afterwards.
    """
    client_port, peer_port = free_ports(2)
    client_url = f"https://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    args = [
        str(binary("etcd")),
        "--name=tls",
        f"--data-dir={base / 'data'}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=tls={peer_url}",
        f"--cert-file={cert}",
        f"--key-file={key}",
    ]
    if client_ca is not None:
        args += [f"--trusted-ca-file={client_ca}", "--client-cert-auth"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}  # our flags say it all
    log = base / "etcd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + HANG_GUARD
        while not accepts_connections("127.0.0.1", client_port):
            if process.poll() is not None:
                pytest.fail(f"etcd exited with code {process.returncode}:\n{_log_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"etcd did not listen on {client_url} within {HANG_GUARD}s:\n{_log_tail(log)}")
            time.sleep(0.05)
        yield client_port
    finally:
        stop_process(process)


async def wait_until_answers(make_client: Callable[[], EtcdClient]) -> None:
    """Poll until a call succeeds (etcd listens before it has elected itself leader)."""
    last: UnavailableError | None = None
    with anyio.move_on_after(HANG_GUARD):
        while True:
            try:
                async with make_client() as etcd:
                    await etcd.current_revision()
                return
            except UnavailableError as exc:
                last = exc
                await anyio.sleep(0.1)
    pytest.fail(f"etcd did not answer within {HANG_GUARD}s; last error: {last}")


@pytest.fixture(scope="module")
def tls_etcd_process(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsEtcd]:
    """etcd with mutual TLS: a server certificate for 127.0.0.1 and localhost, client certificates required."""
    base = tmp_path_factory.mktemp("tls-etcd")
    with run_etcd(base, pki.server_cert, pki.server_key, client_ca=pki.ca) as port:
        yield TlsEtcd(port=port, pki=pki)


def mtls_client(server: TlsEtcd, endpoint: str | None = None, **overrides: object) -> EtcdClient:
    options: dict[str, object] = {
        "ca_file": server.pki.ca,
        "cert_file": server.pki.client_cert,
        "key_file": server.pki.client_key,
        "request_timeout": 5.0,
    }
    options.update(overrides)
    return EtcdClient([endpoint or server.endpoint], **options)  # type: ignore[arg-type]


@pytest.fixture
async def tls_etcd(tls_etcd_process: TlsEtcd) -> AsyncIterator[TlsEtcd]:
    """The module's mutual-TLS etcd, once it answers a call made with the right certificates."""
    await wait_until_answers(lambda: mtls_client(tls_etcd_process, request_timeout=1.0))
    yield tls_etcd_process


@pytest.fixture
def key() -> str:
    return f"tls/{uuid4().hex[:12]}"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_mutual_tls_round_trip(tls_etcd: TlsEtcd, key: str, host: str) -> None:
    endpoint = f"https://{host}:{tls_etcd.port}"
    with anyio.fail_after(HANG_GUARD):
        async with mtls_client(tls_etcd, endpoint) as etcd:
            written = await etcd.put(key, f"over tls via {host}")
            kv = await etcd.get(key)
    assert kv is not None
    assert (kv.value, kv.mod_revision) == (f"over tls via {host}".encode(), written.revision)


def refused_by_tls(message: str) -> bool:
    """Refused by TLS itself, not a timeout: a handshake failure, or with etcd 3.4 (TLS 1.3 checks the
    client certificate after the handshake) the connection's first read failing."""
    text = message.lower()
    return "handshake" in text or (is_34() and "tsi_data_corrupted" in text)


async def test_without_client_certificate_is_refused(tls_etcd: TlsEtcd, key: str) -> None:
    async with EtcdClient([tls_etcd.endpoint], ca_file=tls_etcd.pki.ca, request_timeout=FAIL_TIMEOUT) as etcd:
        with anyio.fail_after(HANG_GUARD), pytest.raises(KkEtcdError) as err:
            await etcd.put(key, "must not be written")
    assert isinstance(err.value, UnavailableError), repr(err.value)
    assert refused_by_tls(str(err.value))
    assert tls_etcd.endpoint in str(err.value)
    # Nothing got through: the certificate-bearing client sees no such key.
    async with mtls_client(tls_etcd) as etcd:
        assert await etcd.get(key) is None


async def test_wrong_ca_is_refused(tls_etcd: TlsEtcd, key: str) -> None:
    async with mtls_client(tls_etcd, ca_file=tls_etcd.pki.other_ca, request_timeout=FAIL_TIMEOUT) as etcd:
        with anyio.fail_after(HANG_GUARD), pytest.raises(KkEtcdError) as err:
            await etcd.get(key)
    assert isinstance(err.value, UnavailableError), repr(err.value)
    assert refused_by_tls(str(err.value))
    assert tls_etcd.endpoint in str(err.value)


async def test_mcp_server_over_mutual_tls(tls_etcd: TlsEtcd, key: str) -> None:
    pki = tls_etcd.pki
    with anyio.fail_after(HANG_GUARD):
        async with served(
            tls_etcd.endpoint, ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key)
        ) as client:
            written = await call(client, "kv_put", key=key, value="via mcp over tls")
            read = await call(client, "kv_get", key=key)
    assert read["value"] == "via mcp over tls"
    assert read["mod_revision"] == written["revision"]
    async with mtls_client(tls_etcd) as etcd:  # and it is really in this etcd
        kv = await etcd.get(key)
    assert kv is not None and kv.value == b"via mcp over tls"


async def test_https_without_ca_file_trusts_the_systems_cas(
    tmp_path: Path, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ca_file: the system's trust store decides (SSL_CERT_FILE names it here), not gRPC's bundled roots."""
    ca = trustme.CA()
    system_bundle = tmp_path / "system-cas.pem"
    ca.cert_pem.write_to_path(str(system_bundle))
    _write_cert(ca.issue_cert("localhost"), tmp_path / "server.pem", tmp_path / "server-key.pem")
    settings = load_settings(env={"KK_ETCD_ENDPOINTS": "https://localhost:2379"})  # accepted without ca_file
    assert settings.ca_file is None
    with run_etcd(tmp_path, tmp_path / "server.pem", tmp_path / "server-key.pem", client_ca=None) as port:
        endpoint = f"https://localhost:{port}"
        # Not in the trust store: refused by verification (so it is on).
        async with EtcdClient([endpoint], request_timeout=FAIL_TIMEOUT) as etcd:
            with anyio.fail_after(HANG_GUARD), pytest.raises(UnavailableError, match=r"(?i)handshake"):
                await etcd.get(key)

        monkeypatch.setenv("SSL_CERT_FILE", str(system_bundle))
        await wait_until_answers(lambda: EtcdClient([endpoint], request_timeout=1.0))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KK_ETCD_")}
        with anyio.fail_after(HANG_GUARD):
            async with stdio_client(
                endpoint, env=env | {"KK_ETCD_ENDPOINTS": endpoint, "KK_ETCD_HUB": "false"}
            ) as client:
                await call(client, "kv_put", key=key, value="trusted by the system")
                assert (await call(client, "kv_get", key=key))["value"] == "trusted by the system"


async def test_server_name_is_the_host_as_written(tmp_path: Path, key: str) -> None:
    """A certificate naming only "localhost" is valid for https://localhost:P (though we dial 127.0.0.1)."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    _write_cert(ca.issue_cert("localhost"), tmp_path / "server.pem", tmp_path / "server-key.pem")
    with run_etcd(tmp_path, tmp_path / "server.pem", tmp_path / "server-key.pem", client_ca=None) as port:

        def client(request_timeout: float = 5.0) -> EtcdClient:
            return EtcdClient(
                [f"https://localhost:{port}"], ca_file=tmp_path / "ca.pem", request_timeout=request_timeout
            )

        await wait_until_answers(lambda: client(1.0))
        with anyio.fail_after(HANG_GUARD):
            async with client() as etcd:
                await etcd.put(key, "named localhost")
                kv = await etcd.get(key)
        assert kv is not None and kv.value == b"named localhost"
        # The certificate does not name 127.0.0.1, so that endpoint is refused: verification is really on.
        async with EtcdClient(
            [f"https://127.0.0.1:{port}"], ca_file=tmp_path / "ca.pem", request_timeout=FAIL_TIMEOUT
        ) as etcd:
            with anyio.fail_after(HANG_GUARD), pytest.raises(UnavailableError, match=f"https://127.0.0.1:{port}"):
                await etcd.get(key)
