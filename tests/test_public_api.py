"""The curated public API: a change to it must be deliberate (this test fails when it drifts)."""

import re
from pathlib import Path

import kk_etcd_mcp

IMPORTS_ETCD3AIO = re.compile(r"^\s*(from|import) etcd3aio", re.MULTILINE)

PUBLIC = {
    "ConfigCenter",
    "EtcdClient",
    "KeyPolicy",
    "KkEtcdError",
    "ServiceRegistry",
    "Settings",
    "__version__",
    "load_settings",
}


def test_public_api_is_curated() -> None:
    assert set(kk_etcd_mcp.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(kk_etcd_mcp, name) is not None


def test_only_the_etcd_package_imports_etcd3aio() -> None:
    package = Path(kk_etcd_mcp.__file__).parent
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if IMPORTS_ETCD3AIO.search(path.read_text()) and path.parent.name != "etcd"
    ]
    assert offenders == []
