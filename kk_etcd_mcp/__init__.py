"""kk-etcd-mcp: an MCP server that runs etcd as a configuration center and service registry."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kk-etcd-mcp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

from .config_center import ConfigCenter, ConfigClient, KeyPolicy
from .errors import InvalidConfigError, KkEtcdError
from .etcd import EtcdClient
from .registry import ServiceRegistry
from .settings import Settings, load_settings

__all__ = [
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
]
