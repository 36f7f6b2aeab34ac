"""Builds the MCPServer: the toolsets the settings ask for, over services built by the caller."""

from mcp.server.mcpserver import MCPServer

from .. import __version__
from ..access import AccessService
from ..config_center import ConfigCenter, KeyPolicy
from ..etcd import EtcdClient
from ..registry import RegistryService
from ..settings import Settings
from .tools.access import register_access_tools
from .tools.kv import register_kv_tools
from .tools.registry import register_registry_tools
from .toolset import ToolRegistrar

INSTRUCTIONS = """\
kk-etcd-mcp runs etcd as a configuration center. Read with kv_get/kv_list/kv_history, write with
kv_put (pass expected_revision from kv_get to avoid overwriting a concurrent change), undo with
kv_rollback, move whole prefixes with kv_export/kv_import (dry_run first). Errors say what to do next.
Service registry: service_register, then service_list / service_alive show health as the hub checks it;
service_pick returns one instance confirmed by a live check; service_check checks one now.
etcd's own users and roles: auth_status, user_*, role_*, auth_enable/auth_disable; a generated password
is shown once, in the result field `password`."""


def build_server(settings: Settings, etcd: EtcdClient, registry: RegistryService | None = None) -> MCPServer:
    server = MCPServer(
        "kk-etcd-mcp",
        title="kk-etcd-mcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level=settings.log_level,
    )
    tools = ToolRegistrar(server, read_only=settings.read_only)
    if "kv" in settings.toolsets:
        policy = KeyPolicy(settings.allowed_prefixes, settings.denied_prefixes, settings.registry_prefix)
        register_kv_tools(tools, ConfigCenter(etcd, policy))
    if "registry" in settings.toolsets and registry is not None:
        register_registry_tools(tools, registry)
    if "access" in settings.toolsets:
        register_access_tools(tools, AccessService(etcd))
    return server
