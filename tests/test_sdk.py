"""The Python SDK (``ServiceRegistry``) in-process against the session etcd, with an in-process hub.

etcdctl confirms what is (or is not) in etcd and plays the outside world (revoking a lease as an etcd
restart would lose it). Each test has its own registry root, so its hub sees only its instances.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, TypeVar

import anyio
import pytest
from conftest import EtcdCtl, keys_under
from grpc_health.v1 import health_pb2, health_pb2_grpc
from health_servers import GrpcHealthServer, HttpHealthServer
from polling import eventually
from registry_helpers import hub_at

from kk_etcd_mcp.errors import InvalidArgumentError, KkEtcdError, NotFoundError
from kk_etcd_mcp.etcd.embedded import free_port
from kk_etcd_mcp.registry import ServiceRegistry

pytestmark = pytest.mark.anyio

T = TypeVar("T")

FAST = {"interval": 1, "timeout": 1}


def stored_lease(etcdctl: EtcdCtl, key: str) -> int | None:
    """The lease the key hangs on (0: none), or None when the key is absent."""
    kvs = json.loads(etcdctl("get", key, "-w", "json").stdout).get("kvs") or []
    return int(kvs[0].get("lease", 0)) if kvs else None


def stored_value(etcdctl: EtcdCtl, key: str) -> dict[str, Any] | None:
    kvs = json.loads(etcdctl("get", key, "-w", "json").stdout).get("kvs") or []
    return json.loads(base64.b64decode(kvs[0]["value"])) if kvs else None


def lease_ids(etcdctl: EtcdCtl) -> set[int]:
    return {int(m, 16) for m in re.findall(r"^([0-9a-f]+)$", etcdctl("lease", "list").stdout, flags=re.M)}


def test_service_registry_is_public_api() -> None:
    import kk_etcd_mcp
    from kk_etcd_mcp import ServiceRegistry as Exported

    assert Exported is ServiceRegistry
    assert "ServiceRegistry" in kk_etcd_mcp.__all__


async def test_register_is_visible_while_kept_and_gone_at_once_on_exit(
    etcd_endpoint: str, root: str, etcdctl: EtcdCtl
) -> None:
    async with (
        HttpHealthServer() as web,
        hub_at(etcd_endpoint, root),
        ServiceRegistry([etcd_endpoint], prefix=root) as registry,
    ):
        key = f"{root}registration/Http/orders/{web.addr}"
        async with registry.register("orders", web.addr, "http", check=FAST, metadata={"zone": "a"}, ttl=3) as kept:
            assert kept.key == key
            assert kept.lease_id != 0
            assert not kept.lost.is_set()
            assert stored_lease(etcdctl, key) == kept.lease_id
            document = stored_value(etcdctl, key)
            assert document is not None
            assert (document["ServiceType"], document["ServiceName"], document["ServiceAddr"]) == (
                "Http",
                "orders",
                web.addr,
            )
            assert document["CheckConfig"]["Addr"] == f"http://{web.addr}/KKHealthCheck"
            assert "Metadata" not in document  # kk_etcd_go's key holds its fields only; ours the rest
            extension = f"{root}registration_ext/Http/orders/{web.addr}"
            assert stored_lease(etcdctl, extension) == kept.lease_id
            assert (stored_value(etcdctl, extension) or {})["Metadata"] == {"zone": "a"}

            async def alive() -> list[Any]:
                return await registry.alive("orders")

            instances = await eventually(alive, "the hub marks orders passing")
            assert [(i.addr, i.status, i.metadata) for i in instances] == [(web.addr, "passing", {"zone": "a"})]
            assert instances[0].lease == kept.lease_id
            picked = await registry.pick("orders")
            assert picked.addr == web.addr
            assert await registry.base_url("orders") == f"http://{web.addr}"
            assert await registry.alive("orders", "grpc") == []
            lease = kept.lease_id

        # no waiting: leaving the context revoked the lease, and the key went with it
        assert stored_lease(etcdctl, key) is None
        assert lease not in lease_ids(etcdctl)
        assert await registry.alive("orders") == []
        with pytest.raises(NotFoundError, match="no alive instance of orders"):
            await registry.pick("orders")


async def test_register_rejects_invalid_input_before_writing(etcd_endpoint: str, root: str, etcdctl: EtcdCtl) -> None:
    async with ServiceRegistry([etcd_endpoint], prefix=root) as registry:
        leases_before = lease_ids(etcdctl)
        cases: list[tuple[tuple[str, str], dict[str, Any], str]] = [
            (("a/b", "127.0.0.1:80"), {}, "service name 'a/b' is not allowed"),
            (("a b", "127.0.0.1:80"), {}, "service name 'a b' is not allowed"),
            (("", "127.0.0.1:80"), {}, "service name '' is not allowed"),
            (("web", "127.0.0.1"), {}, "must be host:port"),
            (("web", "127.0.0.1:80"), {"check": {"timeout": "500ms"}}, "timeout must be at least 1s"),
            (("web", "127.0.0.1:80"), {"check": {"interval": 1, "timeout": 2}}, "must be at least the timeout"),
            (("web", "127.0.0.1:80"), {"weight": 0}, "weight must be at least 1"),
            (("web", "127.0.0.1:80"), {"check": {"interval": "soon"}}, "not a duration: 'soon'"),
            (("web", "127.0.0.1:80"), {"check": {"path": "/health"}}, "path"),
            (("web", "127.0.0.1:80"), {"ttl": 1}, "ttl must be at least 2 seconds"),
        ]
        for args, options, message in cases:
            with pytest.raises(InvalidArgumentError, match=re.escape(message)):
                registry.register(*args, **options)  # raises at the call, before any ``async with``
        assert keys_under(etcdctl, root) == []
        assert lease_ids(etcdctl) - leases_before == set(), "no lease was granted for a rejected registration"


async def test_lost_lease_is_registered_again(etcd_endpoint: str, root: str, etcdctl: EtcdCtl) -> None:
    """An etcd that forgets the lease (restart, long partition): the SDK notices and writes it again."""
    async with (
        ServiceRegistry([etcd_endpoint], prefix=root) as registry,
        registry.register("billing", "127.0.0.1:7001", "tcp", ttl=3) as kept,
    ):
        first = kept.lease_id
        assert stored_lease(etcdctl, kept.key) == first
        etcdctl("lease", "revoke", f"{first:x}")
        assert stored_lease(etcdctl, kept.key) is None  # revoking deleted the registration

        with anyio.fail_after(15):
            await kept.lost.wait()

        async def back() -> bool:
            lease = stored_lease(etcdctl, kept.key)
            return lease is not None and lease not in (0, first)

        await eventually(back, "the SDK registers again on a new lease")
        assert kept.lease_id not in (0, first)
        assert stored_lease(etcdctl, kept.key) == kept.lease_id
        assert kept.losses == 1
        second = kept.lease_id

        # the new lease is kept alive: the key outlives several TTLs
        await anyio.sleep(4)
        assert stored_lease(etcdctl, kept.key) == second
    assert stored_lease(etcdctl, kept.key) is None


async def test_grpc_channel_reaches_a_picked_instance(etcd_endpoint: str, root: str) -> None:
    async with (
        GrpcHealthServer() as rpc,
        hub_at(etcd_endpoint, root),
        ServiceRegistry([etcd_endpoint], prefix=root) as registry,
        registry.register("inventory", rpc.addr, "grpc", check=FAST),
    ):
        await rpc.set_status("inventory.v1.Stock", "SERVING")

        async def alive() -> list[Any]:
            return await registry.alive("inventory")

        await eventually(alive, "the hub marks inventory passing")
        calls_before = rpc.check_calls
        async with registry.grpc_channel("inventory") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(service="inventory.v1.Stock"), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert rpc.check_calls >= calls_before + 2  # pick's live check, then our call through the channel

        with pytest.raises(NotFoundError, match="no alive instance of inventory"):
            await registry.base_url("inventory")  # base_url is for HTTP instances only


async def test_pick_without_an_alive_instance_raises_not_found(etcd_endpoint: str, root: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with (
        hub_at(etcd_endpoint, root) as hub,
        ServiceRegistry([etcd_endpoint], prefix=root) as registry,
        registry.register("ghost", dead, "http", check=FAST),
    ):

        async def checked() -> bool:
            return hub.hub is not None and any(m.checked_at for m in hub.hub.monitors.values())

        await eventually(checked, "the hub checks the dead instance")
        assert await registry.alive("ghost") == []
        with pytest.raises(NotFoundError, match="no alive instance of ghost"):
            await registry.pick("ghost")
        with pytest.raises(NotFoundError, match="no alive instance of nosuch"):
            await registry.pick("nosuch")
        with pytest.raises(NotFoundError, match="no alive instance of nosuch"):
            async with registry.grpc_channel("nosuch"):
                raise AssertionError("a channel to nothing")
        with pytest.raises(KkEtcdError):
            await registry.base_url("nosuch")


async def test_closed_registry_says_how_to_open_it() -> None:
    registry = ServiceRegistry(["http://127.0.0.1:1"])
    with pytest.raises(RuntimeError, match="async with"):
        await registry.alive("x")
