"""The console's views inside the assistant: MCP Apps (extension ``io.modelcontextprotocol/ui``).

Four tools point at a view (``_meta.ui.resourceUri``), a ``ui://`` HTML document the host renders in a
sandboxed iframe beside the tool's result: ``service_list`` the live services table, ``kv_history`` the
versions with diffs and Rollback, ``kv_put`` the review of a proposed value (best with ``dry_run``), and
``cluster_status`` the cluster. Inside the host a view calls tools through the host's bridge, so the
host's own approval applies; the views are the web console's own code (``console/src/apps/``).

Only a client that negotiated the extension (it lists ``text/html;profile=mcp-app`` in its capability:
mcp's ``client_supports_apps``) sees any of it. For every other client the server answers exactly as
without the extension: no ``_meta.ui`` on tools, no ``ui://`` resource listed, and reading one is the
same "Unknown resource" error. The documents are registered through mcp's own ``Apps`` extension (which
also advertises the capability); ``AppViewsGate``, a lowlevel middleware, decides per client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp.server.apps import APP_MIME_TYPE, Apps, ResourceCsp, client_supports_apps
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from .. import mcp_apps
from ..settings import Settings, Toolset
from .lowlevel import lowlevel_server

log = logging.getLogger(__name__)

UI_SCHEME = "ui://"
# No external domain at all: everything a view needs is inlined, and it reaches the server only through the host.
NO_NETWORK = ResourceCsp(connect_domains=[], resource_domains=[], frame_domains=[], base_uri_domains=[])


@dataclass(frozen=True)
class AppView:
    tool: str  # the tool whose result the view shows
    document: str  # the built file in kk_etcd_mcp/mcp_apps/
    title: str
    description: str
    toolset: Toolset
    mutating: bool = False  # the tool is not offered with read_only, so neither is its view

    @property
    def uri(self) -> str:
        return f"{UI_SCHEME}kk-etcd-mcp/{self.document}"


VIEWS = (
    AppView(
        "service_list",
        "services.html",
        "Services",
        "Every registered instance with its health, live; check one now.",
        "registry",
    ),
    AppView(
        "kv_history",
        "history.html",
        "Key history",
        "A key's versions with a diff between any two and Rollback.",
        "kv",
    ),
    AppView(
        "kv_put",
        "review.html",
        "Review a value",
        "The proposed value beside the current one, with what is wrong with it; save it from here.",
        "kv",
        mutating=True,
    ),
    AppView(
        "cluster_status",
        "cluster.html",
        "Cluster",
        "etcd's members, leader, version, database size, alarms and raft index.",
        "cluster",
    ),
)


def offered_views(settings: Settings) -> list[AppView]:
    """The views whose tool this server offers (its toolset is on; a mutating one not with read_only)."""
    if not settings.apps:
        return []
    return [
        view
        for view in VIEWS
        if view.toolset in settings.toolsets
        and not (view.mutating and settings.read_only)
        and (mcp_apps.DOCUMENTS / view.document).is_file()
    ]


def build_apps(views: list[AppView]) -> Apps:
    """mcp's ``Apps`` extension holding one ``ui://`` document per view (it advertises the capability)."""
    apps = Apps()
    for view in views:
        apps.add_html_resource(
            view.uri,
            (mcp_apps.DOCUMENTS / view.document).read_text(encoding="utf-8"),
            name=view.document.removesuffix(".html"),
            title=f"{view.title} (kk-etcd-mcp)",
            description=view.description,
            csp=NO_NETWORK,
            prefers_border=True,
        )
    return apps


class AppViewsGate:
    """Shows the views to clients that negotiated MCP Apps, and nothing of them to any other client."""

    def __init__(self, views: list[AppView]) -> None:
        self.uris: Mapping[str, str] = {view.tool: view.uri for view in views}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        supported = client_supports_apps(ctx)
        if not supported and ctx.method == "resources/read":
            uri = (ctx.params or {}).get("uri")
            if isinstance(uri, str) and uri.startswith(UI_SCHEME):
                # What the server answers for a resource it does not have (mcp's own words and code).
                raise MCPError(code=INVALID_PARAMS, message=f"Unknown resource: {uri}", data={"uri": uri})
        result = await call_next(ctx)
        if not isinstance(result, dict):
            return result
        if ctx.method == "tools/list" and supported:
            return {**result, "tools": [self._point(tool) for tool in result.get("tools", [])]}
        if ctx.method == "resources/list" and not supported:
            resources = [r for r in result.get("resources", []) if not str(r.get("uri", "")).startswith(UI_SCHEME)]
            return {**result, "resources": resources}
        return result

    def _point(self, tool: dict[str, Any]) -> dict[str, Any]:
        uri = self.uris.get(tool.get("name", ""))
        if uri is None:
            return tool
        meta = dict(tool.get("_meta") or {})
        meta["ui"] = {**meta.get("ui", {}), "resourceUri": uri}
        return {**tool, "_meta": meta}


def install_app_views(server: MCPServer, views: list[AppView]) -> None:
    if views:
        lowlevel_server(server).middleware.append(AppViewsGate(views))
        log.debug("MCP Apps: %s", ", ".join(f"{v.tool} -> {v.uri}" for v in views))


__all__ = ["APP_MIME_TYPE", "VIEWS", "AppView", "AppViewsGate", "build_apps", "install_app_views", "offered_views"]
