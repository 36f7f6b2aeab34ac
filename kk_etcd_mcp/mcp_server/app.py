"""Builds the MCPServer: the toolsets the settings ask for, over services built by the caller (the
composition root, ``kk_etcd_mcp.app.runner``, which also runs it on its transport)."""

from collections.abc import Callable

from mcp.server.mcpserver import MCPServer

from .. import __version__
from ..access import AccessService
from ..cluster import ClusterService
from ..config_center import ConfigCenter, KeyPolicy, ReservedPrefix
from ..etcd import EtcdClient
from ..logs import library_level
from ..registry import RegistryKeys, RegistryService
from ..settings import Settings
from .apps import build_apps, install_app_views, offered_views
from .calls import CallGuard
from .completions import Completer, register_completions
from .identity import Scope, current_identity
from .live import LiveUpdates
from .prompts import default_prompts_dir, load_prompts, register_prompts
from .resources import (
    KvSubscriptions,
    ServiceSubscriptions,
    register_client_resource,
    register_cluster_resource,
    register_kv_resources,
    register_service_resources,
)
from .scopes import install_scope_guard
from .tools.access import register_access_tools
from .tools.audit import AUDIT_LOG_SCOPE, build_audit_trail, register_audit_tools
from .tools.cluster import register_cluster_tools
from .tools.kv import register_kv_tools
from .tools.registry import register_registry_tools
from .toolset import ToolRegistrar

INSTRUCTIONS = """\
kk-etcd-mcp runs etcd as a configuration center. Read with kv_get/kv_list/kv_history, write with
kv_put (pass expected_revision from kv_get to avoid overwriting a concurrent change), undo with
kv_rollback, move whole prefixes with kv_export/kv_import (a dry run returns plan_fingerprint; pass it back
to apply that plan). Errors say what to do next.
Service registry: service_register, then service_list / service_alive show health as the hub checks it;
service_pick returns one instance confirmed by a live check; service_check checks one now.
etcd's own users and roles: auth_status, user_*, role_*, auth_enable/auth_disable; a generated password
is shown once, in the result field `password`.
Cluster: cluster_status (also the resource kk://cluster); cluster_snapshot saves a backup file by name.
Every tool that changes something takes dry_run=true (it says what would change and what that removes).
A call that removes data, access or availability (a delete, a lease or ttl over something that exists, a
narrower grant, a revoke, a password change, auth on or off) asks the user to confirm first.
Every change is audited; audit_log shows the audit trail (when the server keeps it in etcd)."""


def may_read_as(scope: Scope) -> Callable[[], bool]:
    return lambda: current_identity().allows(scope)


def reserved_prefixes(keys: RegistryKeys) -> list[ReservedPrefix]:
    """What the kv tools leave to its owners, whose scope reading it through the kv tools needs: the
    registry's whole root (service_list, a read-only tool: 'read') and, inside it, the audit trail (audit_log)."""
    return [
        ReservedPrefix(
            keys.root,
            "the service registry's keys",
            instead="use service_register or service_deregister",
            readers="service_list",
            may_read=may_read_as("read"),
        ),
        ReservedPrefix(
            keys.audit,
            "the audit trail",
            instead="only the server itself appends to it, and audit_log reads it",
            readers=f"audit_log (scope {AUDIT_LOG_SCOPE!r})",
            may_read=may_read_as(AUDIT_LOG_SCOPE),
        ),
    ]


def build_server(
    settings: Settings, etcd: EtcdClient, registry: RegistryService | None = None, live: LiveUpdates | None = None
) -> MCPServer:
    """``live``: subscriptions and log messages (its ``run()`` must be held while serving); None: neither."""
    views = offered_views(settings)  # MCP Apps: an extension is given to MCPServer when it is made
    server = MCPServer(
        "kk-etcd-mcp",
        title="kk-etcd-mcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level=library_level(settings.log_level, settings.library_log_level),  # mcp's own loggers: see logs.py
        subscriptions=live.bus if live is not None else None,
        extensions=[build_apps(views)] if views else None,
    )
    audit = build_audit_trail(settings, etcd)
    guard = CallGuard(settings.max_concurrent_calls, audit)
    tools = ToolRegistrar(server, read_only=settings.read_only, guard=guard, confirm_mode=settings.confirm_destructive)
    toolsets = settings.toolsets
    # Each source exists only with its toolset; the completions draw on the same ones.
    reserved = reserved_prefixes(RegistryKeys(settings.registry_prefix))
    policy = KeyPolicy(settings.allowed_prefixes, settings.denied_prefixes, reserved)
    key_policy = policy if "kv" in toolsets else None
    registry = registry if "registry" in toolsets else None
    access = AccessService(etcd) if "access" in toolsets else None
    if key_policy is not None:
        center = ConfigCenter(etcd, key_policy, settings.max_value_bytes)
        register_kv_tools(tools, center)
        register_kv_resources(server, center)
        if live is not None:
            live.sources.append(KvSubscriptions(center))
    if registry is not None:
        register_registry_tools(tools, registry)
        register_service_resources(server, registry)
        if live is not None:
            live.sources.append(ServiceSubscriptions(registry.keys))
    if access is not None:
        register_access_tools(tools.with_mutating_scope("admin"), access)
    if "cluster" in toolsets:
        cluster = ClusterService(etcd, settings.backup_dir)
        register_cluster_tools(tools.with_mutating_scope("admin"), cluster)
        register_cluster_resource(server, cluster)
    register_audit_tools(tools, audit)
    register_client_resource(server, settings.read_only)
    install_scope_guard(server, tools.required_scope)  # whose request it is; tools/list per token scope
    install_app_views(server, views)  # the views only for clients that negotiated MCP Apps
    prompts = load_prompts(default_prompts_dir())
    register_prompts(server, prompts)
    completer = Completer(
        etcd,
        prompts,
        key_policy=key_policy,
        registry_keys=registry.keys if registry is not None else None,
        access=access,
    )
    register_completions(server, completer)
    if live is not None:
        live.install(server)
    return server
