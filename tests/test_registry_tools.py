"""The registry toolset end to end: the server in process (as ``serve`` builds it), a real etcd, real health servers.

Every test has its own registry root (``<key_prefix>kk_service/``), so the hubs of different tests never
share a leader key or instances. etcdctl writes what kk_etcd_go would write and confirms what was (or
was not) written, independently of the code under test. Waits poll with generous deadlines; nothing
asserts wall-clock times.
"""

from __future__ import annotations

import base64
import json
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import pytest
from conftest import EtcdCtl, keys_under
from health_servers import GrpcHealthServer, HttpHealthServer
from mcp import Client
from mcp_helpers import call, call_error, http_client, http_server, served
from polling import eventually

from kk_etcd_mcp.etcd.embedded import free_port
from kk_etcd_mcp.registry.model import HealthStatus
from kk_etcd_mcp.registry.wire import status_to_json

pytestmark = pytest.mark.anyio

T = TypeVar("T")

FAST = {"interval": 1, "timeout": 1}  # check every second: statuses settle within a few seconds

REGISTRY_TOOLS = {
    # name: (read_only, destructive)
    "service_list": (True, False),
    "service_alive": (True, False),
    "service_pick": (True, False),
    "service_check": (True, False),
    "hub_status": (True, False),
    "service_register": (False, True),  # a ttl over a registered instance removes it
    "service_deregister": (False, True),
}
READ_ONLY_TOOLS = {name for name, (read_only, _) in REGISTRY_TOOLS.items() if read_only}


def server(etcd_endpoint: str, root: str, **settings: str) -> AbstractAsyncContextManager[Client]:
    return served(etcd_endpoint, registry_prefix=root, **settings)


# etcdctl helpers -------------------------------------------------------------------------------------


def get_json(etcdctl: EtcdCtl, key: str) -> dict[str, Any] | None:
    """The key's value (JSON-decoded) and lease, read with etcdctl; None when absent."""
    kvs = json.loads(etcdctl("get", key, "-w", "json").stdout).get("kvs") or []
    if not kvs:
        return None
    return {"value": json.loads(base64.b64decode(kvs[0]["value"])), "lease": kvs[0].get("lease", 0)}


def dump(etcdctl: EtcdCtl, prefix: str) -> list[tuple[str, str, int]]:
    """Every key under ``prefix`` with its value and mod_revision."""
    kvs = json.loads(etcdctl("get", prefix, "--prefix", "-w", "json").stdout).get("kvs") or []
    return [
        (base64.b64decode(kv["key"]).decode(), base64.b64decode(kv.get("value", "")).decode(), kv["mod_revision"])
        for kv in kvs
    ]


def put_passing_status(etcdctl: EtcdCtl, root: str, name: str, addr: str) -> None:
    """What a hub writes for a passing HTTP instance (a hub-less server then trusts it)."""
    now = datetime.now(UTC)
    status = HealthStatus(status="passing", output="HTTP 200 OK", since=now, checked_at=now, checker="test")
    etcdctl("put", f"{root}status/Http/{name}/{addr}", "--", status_to_json(status))


# MCP helpers -----------------------------------------------------------------------------------------


async def listed(client: Client, **filters: Any) -> dict[str, dict[str, Any]]:
    """service_list as {addr: instance}."""
    result = await call(client, "service_list", **filters)
    assert result["count"] == len(result["instances"])
    return {i["addr"]: i for i in result["instances"]}


async def statuses(client: Client, name: str) -> dict[str, str]:
    return {addr: i["status"] for addr, i in (await listed(client, name=name)).items()}


async def alive_addrs(client: Client, name: str) -> set[str]:
    return {i["addr"] for i in (await call(client, "service_alive", name=name))["instances"]}


async def wait_alive(client: Client, name: str, addrs: set[str]) -> None:
    async def exactly() -> bool:
        return await alive_addrs(client, name) == addrs

    await eventually(exactly, f"alive instances of {name} are exactly {sorted(addrs)}")


async def register(client: Client, name: str, addr: str, **args: Any) -> dict[str, Any]:
    args.setdefault("check", FAST)
    return await call(client, "service_register", name=name, addr=addr, **args)


# tests -----------------------------------------------------------------------------------------------


async def test_tools_listed_with_titles_annotations_and_honour_read_only_and_toolsets(
    etcd_endpoint: str, root: str
) -> None:
    async with server(etcd_endpoint, root, hub="false") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert REGISTRY_TOOLS.keys() <= tools.keys()
    for name, (read_only, destructive) in REGISTRY_TOOLS.items():
        tool = tools[name]
        assert tool.title, name
        assert tool.annotations is not None, name
        assert tool.annotations.read_only_hint is read_only, name
        assert tool.annotations.destructive_hint is destructive, name
        # only the tools that probe registered services reach beyond etcd
        assert tool.annotations.open_world_hint is (name in ("service_pick", "service_check")), name
        assert tool.output_schema is not None and tool.output_schema.get("properties"), name
    assert tools["service_register"].annotations.idempotent_hint is True

    async with server(etcd_endpoint, root, hub="false", read_only="true") as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert {n for n in names if n.startswith(("service_", "hub_"))} == READ_ONLY_TOOLS

    async with server(etcd_endpoint, root, hub="false", toolsets="kv") as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert "kv_get" in names
    assert not {n for n in names if n.startswith(("service_", "hub_"))}


async def test_register_writes_kk_etcd_go_fields_and_list_shows_health_and_filters(
    etcd_endpoint: str, root: str, etcdctl: EtcdCtl
) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there: stays critical
    async with (
        HttpHealthServer() as web,
        HttpHealthServer() as web2,
        server(etcd_endpoint, root) as client,
    ):
        result = await register(client, "web", web.addr, metadata={"version": "1.2"}, weight=3)
        key = f"{root}registration/Http/web/{web.addr}"
        assert result["key"] == key
        assert (result["type"], result["name"], result["addr"]) == ("http", "web", web.addr)
        assert result["created"] is True
        assert result["lease"] == 0
        assert result["check"]["addr"] == f"http://{web.addr}/KKHealthCheck"

        # kk_etcd_go's key: its fields only; ours beside it: the whole registration.
        stored = get_json(etcdctl, key)
        assert stored is not None
        assert stored["lease"] == 0
        assert stored["value"] == {
            "ServiceType": "Http",
            "ServiceName": "web",
            "ServiceAddr": web.addr,
            "CheckConfig": {
                "Type": "Http",
                "Timeout": "1s",
                "Interval": "1s",
                "Addr": f"http://{web.addr}/KKHealthCheck",
            },
        }
        extension = get_json(etcdctl, f"{root}registration_ext/Http/web/{web.addr}")
        assert extension is not None and extension["lease"] == 0
        document = extension["value"]
        assert document["CheckConfig"].items() >= stored["value"]["CheckConfig"].items()
        assert document["CheckConfig"]["FailuresBeforeCritical"] == 3
        assert document["Metadata"] == {"version": "1.2"}
        assert document["Weight"] == 3

        again = await register(client, "web", web.addr, metadata={"version": "1.3"}, weight=3)
        assert again["created"] is False
        assert again["revision"] > result["revision"]

        await register(client, "web", dead)
        await register(client, "db", web2.addr, type="tcp", check={**FAST, "timeout": "1s"})

        async def web_passing() -> dict[str, Any] | None:
            instance = (await listed(client, name="web")).get(web.addr)
            return instance if instance and instance["status"] == "passing" else None

        instance = await eventually(web_passing, "web becomes passing")
        assert web.requests >= 1
        assert "200" in instance["output"]
        assert instance["since"] and instance["checked_at"]
        since = datetime.fromisoformat(instance["since"])
        assert datetime.fromisoformat(instance["checked_at"]) >= since
        assert instance["metadata"] == {"version": "1.3"}
        assert instance["weight"] == 3
        assert instance["check"]["interval"] == 1

        whole = await call(client, "service_list")
        assert whole["hub"], "the in-process hub leads and says so"
        assert {(i["type"], i["name"], i["addr"]) for i in whole["instances"]} == {
            ("http", "web", web.addr),
            ("http", "web", dead),
            ("tcp", "db", web2.addr),
        }

        async def db_passing() -> bool:
            return (await statuses(client, "db")) == {web2.addr: "passing"}

        await eventually(db_passing, "the tcp instance becomes passing")

        assert set(await listed(client, name="web")) == {web.addr, dead}
        assert set(await listed(client, type="tcp")) == {web2.addr}
        assert set(await listed(client, type="http")) == {web.addr, dead}
        assert set(await listed(client, status="critical")) == {dead}
        assert set(await listed(client, status="passing")) == {web.addr, web2.addr}
        assert set(await listed(client, name="web", status="passing")) == {web.addr}
        assert await listed(client, name="web", type="tcp") == {}
        assert await listed(client, name="nosuch") == {}
        critical = (await listed(client, name="web"))[dead]
        assert critical["status"] == "critical"
        assert critical["output"]

        # statuses are in etcd too, in the documented shape (written just after the check, by the hub's writer)
        async def stored_passing() -> dict[str, Any] | None:
            status = get_json(etcdctl, f"{root}status/Http/web/{web.addr}")
            return status["value"] if status and status["value"]["status"] == "passing" else None

        document = await eventually(stored_passing, "the passing status is written to etcd")
        assert {"output", "since", "checked_at", "checker"} <= document.keys()
        assert document["checker"] == whole["hub"]


async def test_bad_input_is_a_clear_error_and_writes_nothing(etcd_endpoint: str, root: str, etcdctl: EtcdCtl) -> None:
    addr = "127.0.0.1:8080"
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"name": "a/b", "addr": addr}, ["service name 'a/b' is not allowed", "A-Z, a-z, 0-9"]),
        ({"name": "a b", "addr": addr}, ["service name 'a b' is not allowed"]),
        ({"name": "tab\tname", "addr": addr}, ["service name 'tab\\tname' is not allowed"]),
        ({"name": "", "addr": addr}, ["service name '' is not allowed"]),
        ({"name": "web", "addr": "127.0.0.1"}, ["address '127.0.0.1' must be host:port"]),
        ({"name": "web", "addr": "10.0.0.1/24:80"}, ["address", "host '10.0.0.1/24' is not a DNS name"]),
        ({"name": "web", "addr": "host:99999"}, ["must be host:port"]),
        ({"name": "web", "addr": addr, "check": {"timeout": "500ms"}}, ["timeout must be at least 1s, got 0.5s"]),
        ({"name": "web", "addr": addr, "check": {"interval": 1, "timeout": 2}}, ["interval (1s)", "timeout (2s)"]),
        ({"name": "web", "addr": addr, "check": {"interval": "soon"}}, ["interval", "not a duration"]),
        ({"name": "web", "addr": addr, "check": {"path": "/health"}}, ["path"]),
        ({"name": "web", "addr": addr, "weight": 0}, ["`weight` must be at least 1, got 0"]),
        ({"name": "web", "addr": addr, "type": "udp"}, ["type", "udp"]),
        ({"name": "web", "addr": addr, "ttl": 1}, ["`ttl` must be at least 2, got 1"]),
    ]
    etcdctl("put", f"{root}registration/Http/existing/{addr}", '{"ServiceType":"Http"}')  # a non-empty "before"
    async with server(etcd_endpoint, root, hub="false") as client:
        before = dump(etcdctl, root)
        for args, expected in cases:
            text = await call_error(client, "service_register", **args)
            for fragment in expected:
                assert fragment in text, (args, text)
        assert dump(etcdctl, root) == before, "a rejected registration wrote something"

        # the read tools refuse bad names the same way
        for tool, args in [
            ("service_alive", {"name": "a/b"}),
            ("service_pick", {"name": "a b"}),
            ("service_list", {"name": "a/b"}),
            ("service_check", {"name": "web", "addr": "x/y:1"}),
            ("service_deregister", {"name": "", "addr": addr}),
        ]:
            text = await call_error(client, tool, **args)
            assert "must not contain '/' or whitespace" in text or "is empty" in text, (tool, text)
        assert dump(etcdctl, root) == before


async def test_alive_is_passing_only_and_a_failing_instance_leaves_it(etcd_endpoint: str, root: str) -> None:
    async with (
        HttpHealthServer() as good,
        HttpHealthServer() as bad,
        server(etcd_endpoint, root) as client,
    ):
        never = f"127.0.0.1:{free_port()}"
        for addr in (good.addr, bad.addr, never):
            await register(client, "api", addr)
        await wait_alive(client, "api", {good.addr, bad.addr})
        alive = (await call(client, "service_alive", name="api"))["instances"]
        assert {i["status"] for i in alive} == {"passing"}
        assert (await statuses(client, "api"))[never] == "critical"

        bad.status = 500
        bad.body = "database down"
        await wait_alive(client, "api", {good.addr})
        after = (await listed(client, name="api"))[bad.addr]
        assert after["status"] == "critical"
        assert "500" in after["output"] and "database down" in after["output"]

        bad.status = 429  # warning is still routable
        await wait_alive(client, "api", {good.addr, bad.addr})
        assert (await statuses(client, "api"))[bad.addr] == "warning"

        assert (await call(client, "service_alive", name="nosuch"))["instances"] == []


async def test_pick_strategies_return_only_alive_instances(etcd_endpoint: str, root: str) -> None:
    async with AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(HttpHealthServer()) for _ in range(3)]
        client = await stack.enter_async_context(server(etcd_endpoint, root))
        dead = f"127.0.0.1:{free_port()}"
        addrs = {s.addr for s in servers}
        for s in servers:
            await register(client, "pay", s.addr)
        await register(client, "pay", dead)
        await wait_alive(client, "pay", addrs)

        for _ in range(8):
            picked = await call(client, "service_pick", name="pay")
            assert picked["instance"]["addr"] in addrs
            assert picked["check"]["result"] == "passing"
            assert picked["check"]["addr"] == picked["instance"]["addr"]
            assert picked["skipped"] == []

        rotation = [
            (await call(client, "service_pick", name="pay", strategy="round_robin"))["instance"]["addr"]
            for _ in range(6)
        ]
        order = sorted(addrs)  # round robin goes through the alive instances in address order
        start = order.index(rotation[0])
        assert rotation == [order[(start + i) % 3] for i in range(6)], rotation

        weighted = [
            (await call(client, "service_pick", name="pay", strategy="weighted"))["instance"]["addr"] for _ in range(6)
        ]
        assert set(weighted) <= addrs

        bogus = await call_error(client, "service_pick", name="pay", strategy="fastest")
        assert "strategy" in bogus

        # weights: one heavy and one light alive instance, plus the dead one
        heavy, light = servers[0], servers[1]
        await register(client, "ledger", heavy.addr, weight=100)
        await register(client, "ledger", light.addr, weight=1)
        await register(client, "ledger", dead, weight=1000)
        await wait_alive(client, "ledger", {heavy.addr, light.addr})
        picks = [
            (await call(client, "service_pick", name="ledger", strategy="weighted"))["instance"]["addr"]
            for _ in range(20)
        ]
        assert set(picks) <= {heavy.addr, light.addr}
        assert picks.count(heavy.addr) >= 15, picks  # light goes first with probability 1/101 per pick

        missing = await call_error(client, "service_pick", name="nosuch")
        assert "no alive instance of nosuch" in missing
        only_dead = await call_error(client, "service_pick", name="pay", type="tcp")
        assert "no alive instance of pay" in only_dead


async def test_alive_names_the_hub_and_a_standby_says_what_checked_at_means(
    etcd_endpoint: str, root: str, etcdctl: EtcdCtl
) -> None:
    """service_alive names the leading hub as service_list does. A server whose hub does not lead reads the
    statuses from etcd, where only changes are written: its checked_at is the check that set the status, and
    it says so (the leader's own list shows its latest check)."""
    async with (
        HttpHealthServer() as web,
        server(etcd_endpoint, root) as leader,
        server(etcd_endpoint, root, hub="false") as standby,
    ):
        await register(leader, "shop", web.addr)
        await wait_alive(leader, "shop", {web.addr})
        stored = await eventually(lambda: get_json(etcdctl, f"{root}status/Http/shop/{web.addr}"), "status stored")
        hub = (await call(leader, "service_list"))["hub"]
        assert hub
        for client in (leader, standby):
            alive = await call(client, "service_alive", name="shop")
            assert alive["hub"] == hub and [i["addr"] for i in alive["instances"]] == [web.addr]

        first = (await listed(leader, name="shop"))[web.addr]
        assert first["checked_at_is"] == "latest_check"

        async def checked_again() -> bool:
            later = (await listed(leader, name="shop"))[web.addr]
            return datetime.fromisoformat(later["checked_at"]) > datetime.fromisoformat(first["checked_at"])

        await eventually(checked_again, "the leader shows a later check (interval 1 s)")
        seen = (await listed(standby, name="shop"))[web.addr]
        assert seen["checked_at_is"] == "last_change"
        assert datetime.fromisoformat(seen["checked_at"]) == datetime.fromisoformat(stored["value"]["checked_at"])


async def test_two_servers_share_the_checking_and_hub_status_and_checked_by_show_it(
    etcd_endpoint: str, root: str
) -> None:
    """Two servers with their hubs (sharded, the default) split the instances; a third without a hub sees,
    through hub_status, both members with their shares and one duty holder, and each instance's checker."""
    async with (
        HttpHealthServer() as web,
        server(etcd_endpoint, root) as first,
        server(etcd_endpoint, root),
        server(etcd_endpoint, root, hub="false") as viewer,
    ):
        addrs = [f"10.0.0.{i}:80" for i in range(1, 13)]
        for i, addr in enumerate(addrs):
            await register(first, "shop", addr, check={"addr": f"{web.url}/i/{i}", **FAST})

        async def both_report() -> dict[str, Any] | None:
            found = await call(viewer, "hub_status")
            owned = sum(m["owned"] for m in found["members"])
            return found if found["count"] == 2 and owned == len(addrs) else None

        status = await eventually(both_report, "both hubs report their shares", within=30)
        assert status["mode"] == "sharded" and status["instances"] == len(addrs)
        holders = [m["hub_id"] for m in status["members"] if m["duty_holder"]]
        assert holders == [status["duty_holder"]]
        members = {m["hub_id"] for m in status["members"]}

        async def all_checked() -> dict[str, dict[str, Any]] | None:
            found = await listed(viewer, name="shop")
            return found if all(i["checked_by"] in members for i in found.values()) else None

        shown = await eventually(all_checked, "every instance names the hub that checks it")
        by_hub = {m["hub_id"]: m["owned"] for m in status["members"]}
        assert {hub: sum(1 for i in shown.values() if i["checked_by"] == hub) for hub in members} == by_hub
        alive = await call(viewer, "service_alive", name="shop")
        assert {i["checked_by"] for i in alive["instances"]} <= members


async def test_hub_status_in_leader_mode_names_the_leader(etcd_endpoint: str, root: str) -> None:
    async with server(etcd_endpoint, root, hub_mode="leader") as client:
        found = await eventually(lambda: _leader_known(client), "the hub leads")
    assert found["mode"] == "leader" and found["members"] == [] and found["count"] == 0


async def _leader_known(client: Client) -> dict[str, Any] | None:
    found: dict[str, Any] = await call(client, "hub_status")
    return found if found["duty_holder"] else None


async def test_pick_skips_an_instance_that_fails_the_live_check_and_check_runs_now(
    etcd_endpoint: str, root: str, etcdctl: EtcdCtl
) -> None:
    """No hub: the statuses in etcd say passing, so only pick's live check can tell a stopped server."""
    async with (
        HttpHealthServer() as up,
        HttpHealthServer() as down,
        server(etcd_endpoint, root, hub="false") as client,
    ):
        for s in (up, down):
            await register(client, "cart", s.addr)
            put_passing_status(etcdctl, root, "cart", s.addr)
        assert await alive_addrs(client, "cart") == {up.addr, down.addr}
        assert (await call(client, "service_list"))["hub"] is None
        await down.stop()

        picks = [await call(client, "service_pick", name="cart", strategy="round_robin") for _ in range(2)]
        assert [p["instance"]["addr"] for p in picks] == [up.addr, up.addr]
        skipped = [s for p in picks for s in p["skipped"]]
        assert len(skipped) == 1, picks  # one of the two turns tried the stopped one first
        assert skipped[0].startswith(f"{down.addr}: ")
        assert await alive_addrs(client, "cart") == {up.addr, down.addr}, "pick does not change statuses"

        # service_check: runs now, reports what it found, leaves the kept status alone
        now = await call(client, "service_check", name="cart", addr=up.addr)
        assert (now["type"], now["name"], now["addr"]) == ("http", "cart", up.addr)
        assert now["result"] == "passing"
        assert now["latency_ms"] >= 0
        assert "200" in now["output"]
        up.status, up.body = 503, "draining"
        failing = await call(client, "service_check", name="cart", addr=up.addr, type="http")
        assert failing["result"] == "critical"
        assert "503" in failing["output"] and "draining" in failing["output"]
        assert failing["status"] == "passing"
        refused = await call(client, "service_check", name="cart", addr=down.addr)
        assert refused["result"] == "critical" and refused["output"]
        unknown = await call_error(client, "service_check", name="cart", addr="127.0.0.1:1")
        assert "127.0.0.1:1" in unknown and "cart" in unknown and "is registered" in unknown
        nosuch = await call_error(client, "service_check", name="nosuch", addr=up.addr)
        assert "nosuch" in nosuch

        only = await call_error(client, "service_pick", name="cart")
        assert "no alive instance of cart" in only
        assert down.addr in only and up.addr in only  # both failed their live check, and it says so


async def test_deregister_removes_only_that_instance_and_its_status(
    etcd_endpoint: str, root: str, etcdctl: EtcdCtl
) -> None:
    async with (
        HttpHealthServer() as one,
        HttpHealthServer() as two,
        server(etcd_endpoint, root) as client,
    ):
        for s in (one, two):
            await register(client, "search", s.addr)
        await wait_alive(client, "search", {one.addr, two.addr})
        status_one, status_two = f"{root}status/Http/search/{one.addr}", f"{root}status/Http/search/{two.addr}"

        async def both_statuses_stored() -> bool:
            return {status_one, status_two} <= set(keys_under(etcdctl, f"{root}status/"))

        await eventually(both_statuses_stored, "both statuses are written to etcd")

        gone = await call(client, "service_deregister", name="search", addr=one.addr)
        assert (gone["type"], gone["name"], gone["addr"]) == ("http", "search", one.addr)
        assert keys_under(etcdctl, f"{root}registration/") == [f"{root}registration/Http/search/{two.addr}"]

        async def status_gone() -> bool:
            return status_one not in keys_under(etcdctl, f"{root}status/")

        await eventually(status_gone, "the deregistered instance's status key is deleted")
        assert status_two in keys_under(etcdctl, f"{root}status/")
        assert set(await listed(client, name="search")) == {two.addr}
        assert await alive_addrs(client, "search") == {two.addr}

        # the hub stopped checking it: no more requests reach its server
        await anyio.sleep(0.5)
        seen = one.requests
        await anyio.sleep(2.5)
        assert one.requests == seen

        twice = await call_error(client, "service_deregister", name="search", addr=one.addr)
        assert one.addr in twice and "search" in twice and "is registered" in twice
        wrong_type = await call_error(client, "service_deregister", name="search", addr=two.addr, type="grpc")
        assert "is registered" in wrong_type
        assert set(await listed(client, name="search")) == {two.addr}


async def test_ttl_registration_expires_by_itself(etcd_endpoint: str, root: str, etcdctl: EtcdCtl) -> None:
    async with HttpHealthServer() as web, server(etcd_endpoint, root) as client:
        result = await register(client, "temp", web.addr, ttl=3)
        assert result["lease"] != 0
        key = f"{root}registration/Http/temp/{web.addr}"
        stored = get_json(etcdctl, key)
        assert stored is not None and stored["lease"] == result["lease"]
        assert (await listed(client, name="temp"))[web.addr]["lease"] == result["lease"]

        async def expired() -> bool:
            return not keys_under(etcdctl, f"{root}registration/")

        await eventually(expired, "the registration expires with its 3 s lease")

        async def status_gone() -> bool:
            return not keys_under(etcdctl, f"{root}status/")

        await eventually(status_gone, "its status goes with it")
        assert await listed(client, name="temp") == {}


async def test_kk_etcd_go_registrations_are_checked_and_invalid_ones_reported(
    etcd_endpoint: str, root: str, etcdctl: EtcdCtl
) -> None:
    async with (
        HttpHealthServer() as web,
        GrpcHealthServer() as rpc,
        server(etcd_endpoint, root) as client,
    ):

        async def hub_leads() -> str | None:
            return (await call(client, "service_list"))["hub"]

        # the hub leads (and so watches) before kk_etcd_go "registers": a watched PUT is checked at once,
        # while one found by the hub's initial listing waits a random part of its 10 s interval
        await eventually(hub_leads, "the in-process hub leads")
        etcdctl("put", f"{root}registration/Http/broken/127.0.0.1:1", "{not json")
        etcdctl(
            "put",
            f"{root}registration/Http/slow/127.0.0.1:2",
            json.dumps({"ServiceType": "Http", "CheckConfig": {"Type": "Http", "Timeout": "500ms", "Interval": "1s"}}),
        )
        legacy = {
            "ServiceType": "Http",
            "ServiceName": "legacy",
            "ServiceAddr": web.addr,
            "CheckConfig": {
                "Type": "Http",
                "Timeout": "5s",
                "Interval": "10s",
                "Addr": f"http://{web.addr}/KKHealthCheck",
            },
        }
        etcdctl("put", f"{root}registration/Http/legacy/{web.addr}", json.dumps(legacy))
        legacy_grpc = {
            "ServiceType": "Grpc",
            "ServiceName": "legacy-rpc",
            "ServiceAddr": rpc.addr,
            "CheckConfig": {"Type": "Grpc", "Timeout": "5s", "Interval": "10s", "Addr": rpc.addr},
        }
        etcdctl("put", f"{root}registration/Grpc/legacy-rpc/{rpc.addr}", json.dumps(legacy_grpc))

        async def legacy_passing() -> bool:
            return (await statuses(client, "legacy")) == {web.addr: "passing"} and (
                await statuses(client, "legacy-rpc")
            ) == {rpc.addr: "passing"}

        await eventually(legacy_passing, "kk_etcd_go's registrations become passing", within=20)
        instance = (await listed(client, name="legacy"))[web.addr]
        assert instance["check"]["timeout"] == 5 and instance["check"]["interval"] == 10
        assert web.requests >= 1 and rpc.check_calls >= 1
        assert "legacy" in {i["name"] for i in (await call(client, "service_alive", name="legacy"))["instances"]}

        broken = (await listed(client, name="broken"))["127.0.0.1:1"]
        assert broken["status"] == "critical"
        assert "not valid JSON" in broken["output"]
        assert broken["check"] is None
        slow = (await listed(client, name="slow"))["127.0.0.1:2"]
        assert slow["status"] == "critical"
        assert "timeout must be at least 1s" in slow["output"]

        async def reported_in_etcd() -> bool:
            status = get_json(etcdctl, f"{root}status/Http/broken/127.0.0.1:1")
            return status is not None and "not valid JSON" in status["value"]["output"]

        await eventually(reported_in_etcd, "the hub writes the invalid registration's critical status")
        checked = await call_error(client, "service_check", name="broken", addr="127.0.0.1:1")
        assert "cannot be checked" in checked and "not valid JSON" in checked
        # the hub survived both: a new registration is still picked up
        await register(client, "after", web.addr)

        async def after_passing() -> bool:
            return (await statuses(client, "after")) == {web.addr: "passing"}

        await eventually(after_passing, "a registration made after the invalid ones is checked")


async def test_streamable_http_smoke(etcd_endpoint: str, root: str, etcdctl: EtcdCtl) -> None:
    with http_server(etcd_endpoint, registry_prefix=root, hub="false") as srv:
        async with http_client(srv.url) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert REGISTRY_TOOLS.keys() <= names
            result = await call(client, "service_register", name="remote", addr="127.0.0.1:9", type="tcp")
            # kk_etcd_go has no Tcp type: the registration is in our section alone
            assert keys_under(etcdctl, f"{root}registration/") == []
            assert keys_under(etcdctl, f"{root}registration_ext/") == [result["key"]]
            listing = await call(client, "service_list", name="remote")
            assert [(i["name"], i["status"]) for i in listing["instances"]] == [("remote", "critical")]
            assert "no alive instance of remote" in await call_error(client, "service_pick", name="remote")
