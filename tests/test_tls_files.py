"""TLS files an etcd client cannot use: one clear InvalidArgumentError when the client is entered."""

from __future__ import annotations

from pathlib import Path

import pytest

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
