"""The curated public API: a change to it must be deliberate (this test fails when it drifts)."""

import importlib
import re
from pathlib import Path

import pytest

import kk_etcd_mcp

IMPORTS_ETCD3AIO = re.compile(r"^\s*(from|import) etcd3aio", re.MULTILINE)
# `from ..etcd.client import` and the like: what another package takes from a module of the adapter.
IMPORTS_ETCD_MODULE = re.compile(r"^\s*from (?:\.+|kk_etcd_mcp\.)etcd\.(\w+) import", re.MULTILINE)
# Imported only when asked for: the shared embedded etcd needs POSIX file locks.
ETCD_MODULES_IMPORTED_ON_DEMAND = {"shared", "keeper"}

PUBLIC = {
    "ConfigCenter",
    "ConfigClient",
    "EtcdClient",
    "InvalidConfigError",
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


# Each sub-package's curated API: what other packages (and SDK users) import from it.
SUBPACKAGES = {
    "access": {
        "AccessService", "AuthChangeResult", "AuthStatusResult", "KeyPermission", "PasswordChangeResult",
        "PermissionKind", "RoleDeleteResult", "RoleInfo", "RoleListResult", "RolePermissionChange",
        "UserAddResult", "UserDeleteResult", "UserInfo", "UserListResult", "UserRoleChange",
    },
    "audit": {
        "AuditEntry", "AuditLogResult", "AuditTrail", "ChainReport", "EtcdAuditSink", "JsonLinesSink",
        "Outcome", "REDACTED", "TrailEntry", "redact",
    },
    "cluster": {
        "ClusterAlarm", "ClusterMember", "ClusterService", "ClusterStatus", "MemberStatus", "SnapshotResult",
        "default_backup_dir", "snapshot_file_name",
    },
    "config_center": {
        "ConfigCenter", "ConfigClient", "ExportDocument", "ExportItem", "ImportPlan", "ImportResult", "KeyPolicy",
        "KvDeleteResult", "KvEntry", "KvHistoryResult", "KvListItem", "KvListResult", "KvPutResult",
        "KvRollbackResult", "KvVersion", "LiveConfig", "LiveConfigMap", "ReservedPrefix", "ValueFormat", "Versioned",
    },
    "etcd": {
        "Alarm", "AuthState", "Compare", "Delete", "DeleteResult", "Election", "EmbeddedEtcd",
        "EmbeddedEtcdError", "Endpoint", "EtcdAuth", "EtcdClient", "EtcdMaintenance", "Get", "KeyPermission",
        "KeyValue", "LeaseSession", "Member", "MemberStatus", "PermissionKind", "Put", "PutResult", "RangePage",
        "RangeUpdate", "Snapshot", "SnapshotSummary", "TxnOp", "TxnResult", "WatchBatch", "WatchEvent",
        "already_exists", "as_bytes", "current_leader", "default_data_dir", "describe_range", "etcd_binary",
        "list_and_watch", "parse_endpoint", "prefix_end",
    },
    "registry": {
        "CheckNow", "CheckOptions", "CheckSpec", "DeregisterResult", "HealthStatus", "HubMember", "HubRunner",
        "HubStatus", "Instance",
        "InstanceKey", "InstanceList", "KeptRegistration", "PickResult", "RegisterResult", "Registration",
        "RegistryKeys", "RegistryService", "ServiceRegistry", "ServiceType", "Status", "Strategy",
    },
    "registry.checkers": {"CheckResult", "Prober", "probe_grpc", "probe_http", "probe_tcp"},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SUBPACKAGES))
def test_subpackage_api_is_curated(name: str) -> None:
    package = importlib.import_module(f"kk_etcd_mcp.{name}")
    assert set(package.__all__) == SUBPACKAGES[name]
    for exported in package.__all__:
        assert getattr(package, exported) is not None


def test_other_packages_import_the_etcd_adapter_from_its_package() -> None:
    """``from ..etcd import X``, never ``from ..etcd.client import X``: the modules are free to change."""
    package = Path(kk_etcd_mcp.__file__).parent
    offenders = [
        f"{path.relative_to(package)}: etcd.{module}"
        for path in package.rglob("*.py")
        if path.parent.name != "etcd"
        for module in IMPORTS_ETCD_MODULE.findall(path.read_text())
        if module not in ETCD_MODULES_IMPORTED_ON_DEMAND
    ]
    assert offenders == []


def test_only_the_etcd_package_imports_etcd3aio() -> None:
    package = Path(kk_etcd_mcp.__file__).parent
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if IMPORTS_ETCD3AIO.search(path.read_text()) and path.parent.name != "etcd"
    ]
    assert offenders == []
