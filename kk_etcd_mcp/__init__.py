"""kk-etcd-mcp: an MCP server that runs etcd as a configuration center and service registry.

The SDK's classes are imported on first use (``lazy.py``), so that ``kk-etcd-mcp --version`` and
``--help`` start without etcd3aio, grpc and aiohttp.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("kk-etcd-mcp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

from .errors import InvalidConfigError, KkEtcdError
from .lazy import lazy_exports
from .settings import Settings, load_settings

if TYPE_CHECKING:
    from .config_center import ConfigCenter, ConfigClient, KeyPolicy
    from .etcd import EtcdClient
    from .registry import ServiceRegistry

__getattr__ = lazy_exports(
    __name__,
    {
        ".config_center": ("ConfigCenter", "ConfigClient", "KeyPolicy"),
        ".etcd": ("EtcdClient",),
        ".registry": ("ServiceRegistry",),
    },
)

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
