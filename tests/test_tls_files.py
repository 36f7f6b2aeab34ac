"""TLS files an etcd client cannot use: one clear InvalidArgumentError when the client is entered."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from kk_etcd_mcp.errors import InvalidArgumentError
from kk_etcd_mcp.etcd import EtcdClient

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("setting", ["ca_file", "cert_file", "key_file"])
async def test_a_missing_tls_file_is_an_invalid_argument(tmp_path: Path, setting: str) -> None:
    present = tmp_path / "present.pem"
    present.write_text("not read past the missing one")
    files = {"ca_file": present, "cert_file": present, "key_file": present} | {setting: tmp_path / "missing.pem"}
    client = EtcdClient(["https://127.0.0.1:2379"], **files)
    with pytest.raises(InvalidArgumentError, match=f"^cannot read TLS file {tmp_path / 'missing.pem'}: No such file"):
        async with client:
            raise AssertionError("entered without its TLS file")


async def test_a_client_certificate_without_tls_is_an_invalid_argument(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    with pytest.raises(InvalidArgumentError, match="cert_file and key_file need TLS: use https://"):
        async with EtcdClient(["http://127.0.0.1:2379"], cert_file=cert, key_file=cert):
            raise AssertionError("a client certificate on a plain-text channel")


async def test_a_ca_file_that_holds_no_certificate_is_an_invalid_argument(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    with pytest.raises(InvalidArgumentError, match=f"^cannot use the CA certificates of {ca}: .*set ca_file"):
        async with EtcdClient(["https://127.0.0.1:2379"], ca_file=ca):
            raise AssertionError("entered with a CA file that holds no certificate")


async def test_a_client_certificate_tls_cannot_load_is_an_invalid_argument(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert = tmp_path / "client.pem"
    cert.write_text("not a certificate")
    with pytest.raises(InvalidArgumentError, match=f"^cannot use cert_file {cert} with key_file {cert}: .*private key"):
        async with EtcdClient(["https://127.0.0.1:2379"], ca_file=tmp_path / "ca.pem", cert_file=cert, key_file=cert):
            raise AssertionError("entered with a client certificate TLS cannot load")
