"""MCP Apps negotiated over the real mcp client, with the server in process (as ``serve`` builds it) and a
real etcd: a client that declares the extension ``io.modelcontextprotocol/ui`` sees four tools pointing
at ``ui://`` views and reads them as ``text/html;profile=mcp-app``; any other client gets exactly what a
server without the views gives (compared, not assumed), in both protocol eras.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import EtcdCtl
from mcp import Client
from mcp.client.extension import advertise
from mcp.shared.exceptions import MCPError
from mcp_helpers import served
from mcp_types import TextResourceContents

from kk_etcd_mcp.mcp_server.apps import APP_MIME_TYPE, VIEWS

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]

EXTENSION = "io.modelcontextprotocol/ui"
APPS_CLIENT = [advertise(EXTENSION, {"mimeTypes": [APP_MIME_TYPE]})]
BOUND = {"service_list": "services", "kv_history": "history", "kv_put": "review", "cluster_status": "cluster"}
MODES = ["legacy", "auto"]  # the handshake era (declared at initialize) and 2026-07-28 (declared per request)


def ui_of(tool: Any) -> dict[str, Any] | None:
    return (tool.meta or {}).get("ui")


async def surface(client: Client) -> dict[str, Any]:
    """Everything a client lists, as JSON."""
    templates = (await client.list_resource_templates()).resource_templates
    return {
        "tools": [t.model_dump(mode="json", by_alias=True) for t in (await client.list_tools()).tools],
        "resources": [r.model_dump(mode="json", by_alias=True) for r in (await client.list_resources()).resources],
        "templates": [t.model_dump(mode="json", by_alias=True) for t in templates],
    }


async def read_error(client: Client, uri: str) -> tuple[int, str]:
    with pytest.raises(MCPError) as caught:
        await client.read_resource(uri)
    return caught.value.error.code, caught.value.error.message


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_with_the_extension_gets_tools_pointing_at_the_views(etcd_endpoint: str, mode: str) -> None:
    async with served(etcd_endpoint, mode=mode, extensions=APPS_CLIENT) as client:
        if mode == "auto":  # the handshake era's capabilities have no `extensions` (mcp leaves it out)
            assert EXTENSION in (client.server_capabilities.extensions or {})
        tools = {t.name: t for t in (await client.list_tools()).tools}
        pointed = {name: ui["resourceUri"] for name, t in tools.items() if (ui := ui_of(t))}
        assert pointed == {name: f"ui://kk-etcd-mcp/{doc}.html" for name, doc in BOUND.items()}
        listed = {str(r.uri): r for r in (await client.list_resources()).resources if str(r.uri).startswith("ui://")}
        assert set(listed) == set(pointed.values())
        for uri, resource in listed.items():
            assert resource.mime_type == APP_MIME_TYPE
            (contents,) = (await client.read_resource(uri)).contents
            assert isinstance(contents, TextResourceContents)
            assert contents.mime_type == APP_MIME_TYPE
            ui = (contents.meta or {}).get("ui")  # hosts read it from the contents they render
            assert ui is not None, f"{uri} declares no _meta.ui"
            assert (resource.meta or {}).get("ui") == ui  # and the listing says the same
            # No external domain may be reached: every list is there, and empty.
            assert ui["csp"] == {"connectDomains": [], "resourceDomains": [], "frameDomains": [], "baseUriDomains": []}
            assert ui["prefersBorder"] is True
            html = contents.text
            assert html.lstrip().lower().startswith("<!doctype html>")
            # Self-contained: no script, style or image fetched from anywhere.
            assert not re.search(r"<script[^>]*\bsrc=|<link[^>]*\bhref=|<img[^>]*\bsrc=\"?https?:", html, re.I)


async def test_a_client_without_the_extension_sees_what_a_server_without_views_shows(etcd_endpoint: str) -> None:
    for mode in MODES:
        async with (
            served(etcd_endpoint, mode=mode) as plain_client,
            served(etcd_endpoint, mode=mode, apps="false") as no_views,
        ):
            seen = await surface(plain_client)
            assert seen == await surface(no_views)
            assert not [t for t in seen["tools"] if "_meta" in t and "ui" in (t["_meta"] or {})]
            assert not [r for r in seen["resources"] if r["uri"].startswith("ui://")]
            for view in VIEWS:
                assert await read_error(plain_client, view.uri) == await read_error(no_views, view.uri)


async def test_results_are_the_same_with_and_without_the_extension(
    etcd_endpoint: str, etcdctl: EtcdCtl, key_prefix: str
) -> None:
    """The tools bound to views answer every client alike (the host shows the view beside the same result)."""
    key = f"{key_prefix}app/config"
    etcdctl("put", key, '{"port": 1}')
    etcdctl("put", key, '{"port": 2}')
    calls: list[tuple[str, dict[str, Any]]] = [
        ("kv_history", {"key": key}),
        ("kv_put", {"key": key, "value": '{"port": 3}', "format": "json", "dry_run": True}),
        ("kv_put", {"key": key, "value": '{"port": ', "format": "json", "dry_run": True}),
        ("service_list", {"name": "no-such-service"}),
    ]
    async with (
        served(etcd_endpoint, extensions=APPS_CLIENT, allowed_prefixes=key_prefix) as with_apps,
        served(etcd_endpoint, allowed_prefixes=key_prefix) as without,
        served(etcd_endpoint, apps="false", allowed_prefixes=key_prefix) as no_views,
    ):
        for tool, arguments in calls:
            results = [
                (await client.call_tool(tool, arguments)).model_dump(mode="json", by_alias=True)
                for client in (with_apps, without, no_views)
            ]
            assert results[0] == results[1] == results[2], tool
    assert etcdctl("get", key, "--print-value-only").stdout.strip() == '{"port": 2}'


async def test_a_declaration_without_the_mime_type_is_not_the_extension(etcd_endpoint: str) -> None:
    """The extension is negotiated by listing the mime type the host renders; a bare identifier is not enough."""
    async with served(etcd_endpoint, extensions=[advertise(EXTENSION, {})]) as client:
        assert not [t for t in (await client.list_tools()).tools if ui_of(t)]
        assert not [r for r in (await client.list_resources()).resources if str(r.uri).startswith("ui://")]


async def test_apps_false_offers_no_views_even_to_a_host_that_supports_them(etcd_endpoint: str) -> None:
    async with served(etcd_endpoint, extensions=APPS_CLIENT, apps="false") as client:
        assert EXTENSION not in (client.server_capabilities.extensions or {})  # (the client speaks 2026-07-28)
        assert not [t for t in (await client.list_tools()).tools if ui_of(t)]
        assert not [r for r in (await client.list_resources()).resources if str(r.uri).startswith("ui://")]


async def test_only_the_views_of_offered_tools_are_listed(etcd_endpoint: str) -> None:
    """read_only offers no kv_put, so no review view; without the registry toolset, no services view."""
    async with served(etcd_endpoint, extensions=APPS_CLIENT, read_only="true", toolsets="kv,cluster") as client:
        tools = {t.name: ui_of(t) for t in (await client.list_tools()).tools}
        assert "kv_put" not in tools and "service_list" not in tools
        assert {name for name, ui in tools.items() if ui} == {"kv_history", "cluster_status"}
        uris = {str(r.uri) for r in (await client.list_resources()).resources if str(r.uri).startswith("ui://")}
        assert uris == {"ui://kk-etcd-mcp/history.html", "ui://kk-etcd-mcp/cluster.html"}
