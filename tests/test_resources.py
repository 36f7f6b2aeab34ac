"""Resources and live updates end to end: the server in process (as ``serve`` builds it) or the real
``kk-etcd-mcp serve`` over HTTP, real etcd, the mcp client.

Two protocol eras are served: handshake-era clients (``mode="legacy"``, what most clients speak) use
``resources/subscribe`` and ``logging/setLevel``; 2026-07-28 clients (the mcp client's default) use
``subscriptions/listen``. Changes are made with etcdctl or the tools, never by the code under test.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from conftest import EtcdCtl
from health_servers import HttpHealthServer
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_helpers import call, http_server, served
from mcp_types import (
    BlobResourceContents,
    LoggingMessageNotification,
    ResourceUpdatedNotification,
    TextResourceContents,
)
from polling import eventually
from tcp_proxy import tcp_proxy

from kk_etcd_mcp.etcd import EtcdClient, WatchEvent
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd
from kk_etcd_mcp.mcp_server.subscriptions import ResourceWatches, Subscriber, Target, WatchSpec

# resources/subscribe and logging/setLevel are handshake-era features, tested here on purpose
pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]
assert MCPDeprecationWarning  # the filter above names it

HUB = "kk-etcd-mcp.hub"
GUARD = 20  # seconds: a hang guard for a wait that polling cannot express, never a timing assertion


class Inbox:
    """What the server sent unasked: resource updates and log messages, in arrival order."""

    def __init__(self) -> None:
        self.updated: list[str] = []
        self.logs: list[dict[str, Any]] = []

    async def on_message(self, message: object) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.updated.append(message.params.uri)
        elif isinstance(message, LoggingMessageNotification):
            p = message.params
            self.logs.append({"level": p.level, "logger": p.logger, "data": p.data})

    def hub_logs(self) -> list[dict[str, Any]]:
        return [entry for entry in self.logs if entry["logger"] == HUB]

    async def wait_updated(self, uri: str, after: int = 0) -> None:
        await eventually(lambda: uri in self.updated[after:], f"resources/updated for {uri}")


def legacy_client(endpoint: str, inbox: Inbox, **settings: str) -> AbstractAsyncContextManager[Client]:
    """A handshake-era client of the server."""
    return served(endpoint, mode="legacy", message_handler=inbox.on_message, **settings)


@asynccontextmanager
async def legacy_http(url: str, inbox: Inbox) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy", message_handler=inbox.on_message) as c,
    ):
        yield c


async def read(client: Client, uri: str) -> TextResourceContents | BlobResourceContents:
    result = await client.read_resource(uri)
    assert len(result.contents) == 1
    return result.contents[0]


async def read_text(client: Client, uri: str) -> TextResourceContents:
    contents = await read(client, uri)
    assert isinstance(contents, TextResourceContents), contents
    return contents


async def read_error(client: Client, uri: str) -> str:
    with pytest.raises(MCPError) as error:
        await client.read_resource(uri)
    assert "Traceback" not in error.value.message
    return error.value.message


# Reading ---------------------------------------------------------------------------------------------


async def test_resources_listed_and_values_read_with_mime_type_by_format(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    p = key_prefix
    etcdctl("put", f"{p}app/db.json", '{"host": "db", "port": 5432}')
    etcdctl("put", f"{p}app/db.yaml", "host: db\nport: 5432\n")
    etcdctl("put", f"{p}app/plain", "just text")
    etcdctl("put", f"/{p}abs/key", '["starts", "with", "slash"]')
    etcdctl("put", f"{p}secret/token", "s3cr3t")
    async with EtcdClient([etcd_endpoint]) as etcd:
        await etcd.put(f"{p}app/binary", b"\xff\xfe\x00raw")

    async with served(etcd_endpoint, hub="false", denied_prefixes=f"{p}secret/") as client:
        templates = {t.uri_template: t for t in (await client.list_resource_templates()).resource_templates}
        assert {"etcd://kv/{+key}", "kk://services/{name}"} <= templates.keys()
        assert "kk://services" in {str(r.uri) for r in (await client.list_resources()).resources}

        json_value = await read_text(client, f"etcd://kv/{p}app/db.json")
        assert json.loads(json_value.text) == {"host": "db", "port": 5432}
        assert json_value.mime_type == "application/json"
        assert json_value.uri == f"etcd://kv/{p}app/db.json"
        yaml_value = await read_text(client, f"etcd://kv/{p}app/db.yaml")
        assert (yaml_value.text, yaml_value.mime_type) == ("host: db\nport: 5432\n", "application/yaml")
        plain = await read_text(client, f"etcd://kv/{p}app/plain")
        assert (plain.text, plain.mime_type) == ("just text", "text/plain")
        binary = await read(client, f"etcd://kv/{p}app/binary")
        assert isinstance(binary, BlobResourceContents)
        assert base64.b64decode(binary.blob) == b"\xff\xfe\x00raw"

        # a key that starts with '/': after the template's own '/', literally or percent-encoded
        for uri in (f"etcd://kv//{p}abs/key", f"etcd://kv/%2F{p.replace('/', '%2F')}abs%2Fkey"):
            value = await read_text(client, uri)
            assert (json.loads(value.text), value.mime_type) == (["starts", "with", "slash"], "application/json")

        assert f"key not found: {p}app/missing" in await read_error(client, f"etcd://kv/{p}app/missing")
        # the same prefix guard as the kv tools; no ResourceSecurity path rule gets in first
        denied = await read_error(client, f"etcd://kv/{p}secret/token")
        assert f"key {p}secret/token is outside the allowed prefixes" in denied
        assert "s3cr3t" not in denied
        assert "key must not be empty" in await read_error(client, "etcd://kv/")

        service = json.loads((await read_text(client, "kk://services/nobody-yet")).text)
        assert (service["name"], service["count"], service["instances"]) == ("nobody-yet", 0, [])
        assert "must not contain" in await read_error(client, "kk://services/two%20words")


# Handshake-era subscriptions -------------------------------------------------------------------------


async def test_subscribe_notifies_each_change_until_unsubscribed(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    p = key_prefix
    key = f"/{p}cfg/feature"
    literal, encoded = f"etcd://kv/{key}", f"etcd://kv/{key.replace('/', '%2F')}"  # two spellings, one key
    inbox = Inbox()
    async with legacy_client(etcd_endpoint, inbox, hub="false", denied_prefixes=f"{p}secret/") as client:
        resources = client.server_capabilities.resources
        assert resources is not None and resources.subscribe
        assert client.server_capabilities.logging is not None

        await client.subscribe_resource(literal)
        await client.subscribe_resource(encoded)
        etcdctl("put", key, "on")  # the key did not exist when subscribed: its creation counts
        await inbox.wait_updated(literal)
        await inbox.wait_updated(encoded)
        assert (await read_text(client, literal)).text == "on"

        etcdctl("del", key)
        mark = len(inbox.updated)
        etcdctl("put", key, "again")
        await inbox.wait_updated(literal, mark)

        await client.unsubscribe_resource(literal)
        mark = len(inbox.updated)
        etcdctl("put", key, "off")
        await inbox.wait_updated(encoded, mark)  # still subscribed: same watch, same event
        await client.send_ping()  # anything sent for that event came before the ping's answer
        assert literal not in inbox.updated[mark:]

        before = etcdctl("get", p, "--prefix", "-w", "json").stdout
        for uri, expected in [
            (f"etcd://kv/{p}secret/token", "outside the allowed prefixes"),
            ("etcd://kv/", "the key is empty"),
            ("kk://services/bad%20name", "must not contain"),
            ("file:///etc/passwd", "cannot subscribe to file:///etc/passwd"),
        ]:
            with pytest.raises(MCPError) as error:
                await client.subscribe_resource(uri)
            assert expected in error.value.message
        assert _kvs(etcdctl("get", p, "--prefix", "-w", "json").stdout) == _kvs(before)  # refused: nothing written
        etcdctl("put", f"{p}secret/token", "changed")
        etcdctl("put", key, "last")
        mark = len(inbox.updated)
        await inbox.wait_updated(encoded, mark)
        await client.send_ping()
        assert not any("secret" in uri for uri in inbox.updated)


def _kvs(etcdctl_json: str) -> list[dict[str, Any]]:
    return list(json.loads(etcdctl_json).get("kvs") or [])


async def test_subscription_over_streamable_http(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    uri = f"etcd://kv/{key_prefix}http/key"
    inbox = Inbox()
    with http_server(etcd_endpoint, hub="false") as srv:
        async with legacy_http(srv.url, inbox) as client:
            await client.subscribe_resource(uri)
            etcdctl("put", f"{key_prefix}http/key", "v1")
            await inbox.wait_updated(uri)
            assert (await read_text(client, uri)).text == "v1"


# Services, the hub's transitions, log levels ---------------------------------------------------------


async def test_service_resources_follow_registration_and_health_with_hub_logs(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    root = f"{key_prefix}kk_service/"
    name = "orders"
    one, every = f"kk://services/{name}", "kk://services"
    inbox = Inbox()
    async with (
        HttpHealthServer() as web,
        legacy_client(etcd_endpoint, inbox, registry_prefix=root, hub="true", hub_lease_ttl="3") as client,
    ):
        await client.set_logging_level("error")  # the passing transition (info) must not arrive
        await client.subscribe_resource(one)
        await client.subscribe_resource(every)
        check = {"interval": 1, "timeout": 1, "failures_before_critical": 1}
        await call(client, "service_register", name=name, addr=web.addr, check=check)
        await inbox.wait_updated(one)
        await inbox.wait_updated(every)

        status_key = f"{root}status/Http/{name}/{web.addr}"

        def status_in_etcd() -> str | None:
            kvs = json.loads(etcdctl("get", status_key, "-w", "json").stdout).get("kvs") or []
            return json.loads(base64.b64decode(kvs[0]["value"]))["status"] if kvs else None

        await eventually(lambda: status_in_etcd() == "passing", "the hub wrote passing")

        async def shown(status: str) -> bool:
            document = json.loads((await read_text(client, one)).text)
            return [i["status"] for i in document["instances"]] == [status]

        await eventually(lambda: shown("passing"), f"{one} shows the instance passing")
        listing = json.loads((await read_text(client, every)).text)
        assert [i["addr"] for i in listing["services"][name]] == [web.addr]

        await client.set_logging_level("info")
        mark = len(inbox.updated)
        await web.stop()
        await eventually(lambda: status_in_etcd() == "critical", "the hub wrote critical")
        await inbox.wait_updated(one, mark)
        await inbox.wait_updated(every, mark)
        await eventually(lambda: shown("critical"), f"{one} shows the instance critical")

        (critical,) = await eventually(inbox.hub_logs, "a hub log message")
        assert critical["level"] == "warning"
        assert critical["data"]["instance"] == f"Http/{name}/{web.addr}"
        assert critical["data"]["status"] == "critical"
        assert critical["data"]["output"]
        # at level error the passing transition was dropped, not queued: it would have come first

        await web.start()
        await eventually(lambda: len(inbox.hub_logs()) == 2, "the transition back to passing is logged")
        passing = inbox.hub_logs()[1]
        assert (passing["level"], passing["data"]["status"]) == ("info", "passing")


# 2026-07-28 listen streams ---------------------------------------------------------------------------


async def test_listen_stream_delivers_updates_and_refuses_denied_keys(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    uri = f"etcd://kv/{key_prefix}listen/key"
    async with served(etcd_endpoint, hub="false", denied_prefixes=f"{key_prefix}secret/") as client:
        async with client.listen(resource_subscriptions=[uri, "kk://not-ours"]) as stream:
            etcdctl("put", f"{key_prefix}listen/key", "v1")
            with anyio.fail_after(GUARD):
                event = await anext(aiter(stream))
            assert event == ResourceUpdated(uri=uri)
        with pytest.raises(MCPError) as error:
            async with client.listen(resource_subscriptions=[f"etcd://kv/{key_prefix}secret/x"]):
                pass
        assert "outside the allowed prefixes" in error.value.message


# The watches themselves ------------------------------------------------------------------------------


class Recorder(Subscriber):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    async def updated(self, uris: set[str]) -> None:
        self.seen.extend(sorted(uris))


def key_target(key: str) -> Target:
    topic = f"etcd://kv/{key}"

    def topics(_event: WatchEvent) -> tuple[str]:
        return (topic,)

    return Target(topic, WatchSpec(key.encode(), None, topics))


async def test_watches_are_shared_released_and_survive_compaction(own_etcd: EmbeddedEtcd) -> None:
    a, b = Recorder(), Recorder()
    target = key_target("k")
    async with (
        tcp_proxy("127.0.0.1", own_etcd.client_port) as proxy,
        EtcdClient([own_etcd.client_url]) as writer,
        EtcdClient([proxy.url]) as watcher,
    ):
        watches = ResourceWatches(watcher)
        async with watches.run():
            await watches.subscribe(a, "etcd://kv/k", target)
            await watches.subscribe(b, "etcd://kv/%6B", target)
            assert watches.watch_count == 1  # one watch for one key
            await writer.put("k", "1")
            await eventually(lambda: a.seen and b.seen, "both subscribers hear of the change")

            proxy.cut()  # the watch breaks; meanwhile the key changes and etcd compacts that history away
            for i in range(3):
                last = await writer.put("k", f"x{i}")
            await writer.compact(last.revision)
            seen = len(a.seen)
            proxy.restore()
            await eventually(lambda: len(a.seen) > seen, "after the compaction the subscriber is told to read again")
            seen = len(a.seen)
            await writer.put("k", "after")
            await eventually(lambda: len(a.seen) > seen, "the watch goes on after the compaction")

            watches.unsubscribe(b, "etcd://kv/%6B")
            assert watches.watch_count == 1  # a still follows it
            watches.drop(a)
            assert watches.watch_count == 0
            assert a.targets == {} and b.targets == {}


def etcd_watchers(server: EmbeddedEtcd) -> int:
    """etcd's own count of open watchers: what a leaked watch would keep up."""
    with urllib.request.urlopen(f"{server.client_url}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("etcd_debugging_mvcc_watcher_total "):
                return int(float(line.split()[1]))
    raise AssertionError("etcd reports no watcher gauge")


async def test_watches_end_with_unsubscribe_session_end_and_listen_stream_end(own_etcd: EmbeddedEtcd) -> None:
    """One server, clients coming and going: etcd's watcher count returns to where it was."""

    async def watchers_are(count: int) -> None:
        await eventually(lambda: etcd_watchers(own_etcd) == count, f"etcd has {count} watchers")

    with http_server(own_etcd.client_url, hub="false") as srv:
        await watchers_are(0)
        inbox = Inbox()
        async with legacy_http(srv.url, inbox) as client:
            await client.subscribe_resource("etcd://kv/a")
            await client.subscribe_resource("etcd://kv/b")
            await client.subscribe_resource("etcd://kv/b")  # again: no second watch
            await watchers_are(2)
            await client.unsubscribe_resource("etcd://kv/a")
            await watchers_are(1)
        await watchers_are(0)  # the session ended with a subscription left: its watch goes too

        async with Client(srv.url) as modern:
            async with modern.listen(resource_subscriptions=["etcd://kv/a", "etcd://kv/c"]):
                await watchers_are(2)
            await watchers_are(0)
