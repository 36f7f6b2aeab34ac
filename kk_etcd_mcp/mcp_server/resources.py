"""Resources: etcd values (``etcd://kv/{+key}``), the registry's services (``kk://services[/{name}]``), the
cluster (``kk://cluster``) and the calling client itself (``kk://client``: its name and scope).

``{+key}`` is RFC 6570 reserved expansion, so a key's ``/`` stays literal: ``etcd://kv/app/db`` is the
key ``app/db`` and ``etcd://kv//app/db`` the key ``/app/db``. Other reserved characters of a key (``?``,
``#``, ``%``, spaces) are percent-encoded in the URI.

ResourceSecurity: mcp's default policy rejects template values that look like file paths (a leading
``/``, ``..`` segments, ``C:``). etcd keys are not file paths and nothing here touches a file system:
``/app/db`` and ``a/../b`` are ordinary, distinct keys. So the ``key`` parameter is exempt from those
checks, and the guard is the same ``KeyPolicy`` (allowed minus denied prefixes) as the kv tools.

An etcd value has no content type; the mime type follows the format recognised when reading it
(``application/json``, ``application/yaml``, else ``text/plain``), and a value that is not UTF-8 is
returned as a blob. MCPServer gives a template one fixed mime type, so reads of ``etcd://kv/`` URIs are
answered by a ``resources/read`` handler placed in front of MCPServer's own; the template stays
registered for ``resources/templates/list`` (and for in-process ``MCPServer.read_resource``).
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from mcp.server.mcpserver import MCPServer, ResourceSecurity
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import UriTemplate
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    BlobResourceContents,
    ReadResourceRequestParams,
    ReadResourceResult,
    TextResourceContents,
)
from pydantic import BaseModel, Field

from ..cluster import ClusterService
from ..config_center import ConfigCenter
from ..errors import ForbiddenKeyError, InvalidArgumentError, KkEtcdError, NotFoundError
from ..etcd import WatchEvent, prefix_end
from ..registry import Instance, RegistryKeys, RegistryService
from ..registry.model import ALIVE_STATUSES, check_name
from .identity import Scope, current_identity
from .lowlevel import lowlevel_server
from .subscriptions import Target, WatchSpec

KV_TEMPLATE = "etcd://kv/{+key}"
SERVICES_URI = "kk://services"
SERVICE_TEMPLATE = "kk://services/{name}"

RESOURCE_NOT_FOUND = -32002  # the MCP specification's error code for a resource that does not exist
MIME_TYPES = {"json": "application/json", "yaml": "application/yaml", "text": "text/plain"}
ETCD_KEYS_ARE_NOT_PATHS = ResourceSecurity(exempt_params={"key"})  # see the module docstring

_KV = UriTemplate.parse(KV_TEMPLATE)
_SERVICE = UriTemplate.parse(SERVICE_TEMPLATE)


def kv_key(uri: str) -> str | None:
    """The etcd key an ``etcd://kv/`` URI names (percent-decoded); None for any other URI."""
    match = _KV.match(uri)
    key = match.get("key") if match is not None else None
    return key if isinstance(key, str) else None


def kv_uri(key: str) -> str:
    return _KV.expand({"key": key})


def service_name(uri: str) -> str | None:
    match = _SERVICE.match(uri)
    name = match.get("name") if match is not None else None
    return name if isinstance(name, str) else None


def service_uri(name: str) -> str:
    return _SERVICE.expand({"name": name})


def resource_error(error: KkEtcdError, uri: str) -> MCPError:
    """A domain error as the JSON-RPC error of a resource request; the message is the error's own."""
    if isinstance(error, NotFoundError):
        code = RESOURCE_NOT_FOUND
    elif isinstance(error, ForbiddenKeyError | InvalidArgumentError):
        code = INVALID_PARAMS
    else:
        code = INTERNAL_ERROR
    return MCPError(code=code, message=str(error), data={"uri": uri})


# etcd values ------------------------------------------------------------------------------------------


async def read_value(center: ConfigCenter, uri: str, key: str) -> TextResourceContents | BlobResourceContents:
    try:
        entry = await center.get(key)
    except KkEtcdError as error:
        raise resource_error(error, uri) from error
    if entry.encoding == "base64":
        return BlobResourceContents(uri=uri, blob=entry.value, mime_type="application/octet-stream")
    return TextResourceContents(uri=uri, text=entry.value, mime_type=MIME_TYPES[entry.format])


def register_kv_resources(server: MCPServer, center: ConfigCenter) -> None:
    @server.resource(
        KV_TEMPLATE,
        name="etcd_value",
        title="etcd value",
        description=(
            "The value of one etcd key, under the allowed prefixes. A key's '/' stays as is: etcd://kv/app/db "
            "is app/db, etcd://kv//app/db is /app/db. Mime type by format: application/json, application/yaml "
            "or text/plain. Subscribe to hear when it changes."
        ),
        mime_type="text/plain",
        security=ETCD_KEYS_ARE_NOT_PATHS,
    )
    async def etcd_value(key: str) -> str | bytes:
        contents = await read_value(center, kv_uri(key), key)
        if isinstance(contents, BlobResourceContents):
            return base64.b64decode(contents.blob)
        return contents.text

    lowlevel = lowlevel_server(server)
    served = lowlevel.get_request_handler("resources/read")
    assert served is not None, "MCPServer serves resources/read"
    read_others = served.handler

    async def read_resource(ctx: Any, params: ReadResourceRequestParams) -> Any:
        key = kv_key(params.uri)
        if key is None:
            return await read_others(ctx, params)
        return ReadResourceResult(contents=[await read_value(center, params.uri, key)])

    lowlevel.add_request_handler("resources/read", ReadResourceRequestParams, read_resource)


class KvSubscriptions:
    """Which key an ``etcd://kv/`` subscription watches; the kv tools' prefix guard applies."""

    def __init__(self, center: ConfigCenter) -> None:
        self.center = center

    def target(self, uri: str) -> Target | None:
        key = kv_key(uri)
        if key is None:
            return None
        if not key:
            raise InvalidArgumentError("the key is empty: use etcd://kv/<key>")
        raw = key.encode()
        self.center.policy.check_read(raw)
        topic = kv_uri(key)
        return Target(topic, WatchSpec(raw, None, lambda _event: (topic,)))


# services -------------------------------------------------------------------------------------------


class ServicesDocument(BaseModel):
    hub: str | None = Field(description="The hub checking the instances now (None: no hub leads).")
    count: int = Field(description="Instances in all services.")
    services: dict[str, list[Instance]] = Field(description="Service name -> its instances with their status.")


class ServiceDocument(BaseModel):
    name: str
    hub: str | None = Field(description="The hub checking the instances now (None: no hub leads).")
    count: int
    alive: int = Field(description="Instances passing or warning (routable).")
    instances: list[Instance]


def register_service_resources(server: MCPServer, registry: RegistryService) -> None:
    @server.resource(
        SERVICES_URI,
        name="services",
        title="Registered services",
        description="Every registered service: name -> instances with status, output, since, checked_at.",
        mime_type="application/json",
    )
    async def services() -> str:
        try:
            listing = await registry.list_instances()
        except KkEtcdError as error:
            raise resource_error(error, SERVICES_URI) from error
        grouped: defaultdict[str, list[Instance]] = defaultdict(list)
        for instance in listing.instances:
            grouped[instance.name].append(instance)
        document = ServicesDocument(hub=listing.hub, count=listing.count, services=dict(sorted(grouped.items())))
        return document.model_dump_json(indent=2)

    @server.resource(
        SERVICE_TEMPLATE,
        name="service",
        title="One service",
        description="The instances of one service with their status; empty until one registers.",
        mime_type="application/json",
    )
    async def service(name: str) -> str:
        try:
            listing = await registry.list_instances(name)
        except KkEtcdError as error:
            raise resource_error(error, service_uri(name)) from error
        alive = sum(1 for i in listing.instances if i.status in ALIVE_STATUSES)
        document = ServiceDocument(
            name=name, hub=listing.hub, count=listing.count, alive=alive, instances=listing.instances
        )
        return document.model_dump_json(indent=2)


class ServiceSubscriptions:
    """``kk://services`` and ``kk://services/<name>`` share one watch over registrations and statuses."""

    def __init__(self, keys: RegistryKeys) -> None:
        self.keys = keys
        # registration/, registration_ext/ and status/ are neighbours under the root: one range covers them
        self.watch = WatchSpec(keys.registrations.encode(), prefix_end(keys.statuses), self._topics)

    def target(self, uri: str) -> Target | None:
        if uri == SERVICES_URI:
            return Target(SERVICES_URI, self.watch)
        name = service_name(uri)
        if name is None:
            return None
        check_name(name)
        return Target(service_uri(name), self.watch)

    def _topics(self, event: WatchEvent) -> Iterable[str]:
        instance = self.keys.parse(event.kv.key.decode(errors="replace"))
        return (SERVICES_URI, service_uri(instance.name)) if instance is not None else ()


# The cluster --------------------------------------------------------------------------------------------

CLUSTER_URI = "kk://cluster"


def register_cluster_resource(server: MCPServer, cluster: ClusterService) -> None:
    @server.resource(
        CLUSTER_URI,
        name="cluster",
        title="etcd cluster status",
        description="The etcd cluster's members, leader, version, sizes, revision and alarms (as cluster_status).",
        mime_type="application/json",
    )
    async def cluster_resource() -> str:
        try:
            status = await cluster.status()
        except KkEtcdError as error:
            raise resource_error(error, CLUSTER_URI) from error
        return status.model_dump_json(indent=2)


# The client itself --------------------------------------------------------------------------------------

CLIENT_URI = "kk://client"


class ClientDocument(BaseModel):
    name: str = Field(
        description="The client's name: its bearer token's name, 'stdio', or 'http' (HTTP without tokens)."
    )
    scope: Scope | None = Field(
        description="read: read-only tools; write: also kv and registry changes; admin: everything (users, roles, "
        "auth, cluster, audit_log); null: no scope, every tool is refused. tools/list shows exactly the tools this "
        "client may call."
    )
    read_only: bool = Field(description="True when the server offers only read-only tools, whatever the scope.")


def register_client_resource(server: MCPServer, read_only: bool) -> None:
    @server.resource(
        CLIENT_URI,
        name="client",
        title="This client",
        description="Who this server takes the caller for: its name (as the audit trail records it) and its scope.",
        mime_type="application/json",
    )
    async def client_resource() -> str:
        identity = current_identity()
        return ClientDocument(name=identity.name, scope=identity.scope, read_only=read_only).model_dump_json(indent=2)
