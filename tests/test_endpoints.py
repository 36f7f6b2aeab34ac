"""Health-aware gRPC endpoints: the hub publishes alive gRPC instances in etcd's naming format.

The hub runs in-process against the session etcd and real gRPC servers; etcdctl reads the keys back
as any other etcd client (Go's resolver among them) would. A Python client resolves through the keys
with the SDK and must reach only the healthy servers, each of which says who it is.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from conftest import EtcdCtl
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from health_servers import HOST, GrpcHealthServer, HttpHealthServer
from registry_helpers import eventually, register, registry_keys, running_hub, wait_status

from kk_etcd_mcp.errors import InvalidArgumentError, KkEtcdError, NotFoundError
from kk_etcd_mcp.etcd import Compare, EtcdClient
from kk_etcd_mcp.etcd.embedded import free_port
from kk_etcd_mcp.registry import HealthStatus, Instance, InstanceKey, RegistryKeys, ServiceRegistry
from kk_etcd_mcp.registry.grpc_target import balanced_options, static_target
from kk_etcd_mcp.registry.status_writer import StatusWriter
from kk_etcd_mcp.registry.store import RegistryStore
from kk_etcd_mcp.registry.wire import endpoint_addr_from_json, endpoint_to_json, status_to_json

WHOAMI = "/kk.test.Whoami/Name"  # raw bytes in and out: no generated stubs needed


# Wire format and keys (no I/O) ------------------------------------------------------------------


def test_endpoint_json_is_what_etcds_go_endpoints_manager_writes() -> None:
    # json.Marshal(internal.Update{Op: internal.Add, Addr: "10.0.0.5:50051"}) in etcd's client/v3/naming;
    # Metadata is always null: an object there crashes grpc-go's balancers (tests/go/grpc_resolver).
    assert endpoint_to_json("10.0.0.5:50051") == '{"Op":0,"Addr":"10.0.0.5:50051","Metadata":null}'
    assert endpoint_to_json("[::1]:50051") == '{"Op":0,"Addr":"[::1]:50051","Metadata":null}'


@pytest.mark.parametrize(
    ("raw", "addr"),
    [
        (b'{"Op":0,"Addr":"10.0.0.5:1","Metadata":null}', "10.0.0.5:1"),
        (b'{"Addr":"10.0.0.5:1","Metadata":{"weight":3},"Extra":true}', "10.0.0.5:1"),  # Go ignores unknown fields
        (b'{"Op":1,"Addr":"10.0.0.5:1"}', "10.0.0.5:1"),  # Go's resolver adds every stored value, whatever its Op
        (b'{"Op":0,"Addr":""}', None),
        (b'{"Op":0}', None),
        (b'["10.0.0.5:1"]', None),
        (b"10.0.0.5:1", None),
        (b"\xff\xfe", None),
    ],
)
def test_endpoint_values_read_as_gos_resolver_reads_them(raw: bytes, addr: str | None) -> None:
    assert endpoint_addr_from_json(raw) == addr


def test_endpoint_keys_follow_the_resolver_target_layout() -> None:
    keys = RegistryKeys("reg/")
    assert keys.endpoints == "reg/endpoints/"
    assert keys.endpoint_target("api") == "reg/endpoints/api"
    assert keys.endpoint("api", "10.0.0.5:50051") == "reg/endpoints/api/10.0.0.5:50051"
    assert keys.parse_endpoint("reg/endpoints/api/10.0.0.5:50051") == InstanceKey("grpc", "api", "10.0.0.5:50051")
    for other in ("reg/endpoints/api", "reg/endpoints/api/", "reg/endpoints/api/a/b", "other/endpoints/api/a:1"):
        assert keys.parse_endpoint(other) is None, other
    # Endpoint keys never read as registrations or statuses (and the other way round).
    assert keys.parse("reg/endpoints/api/10.0.0.5:50051") is None
    assert keys.parse_endpoint("reg/registration/Grpc/api/10.0.0.5:50051") is None


async def test_static_target_takes_ip_literals_and_resolves_host_names() -> None:
    assert await static_target(["10.0.0.5:1", "10.0.0.6:2"]) == "ipv4:10.0.0.5:1,10.0.0.6:2"
    assert await static_target(["[::1]:1", "[fe80::2]:2"]) == "ipv6:[::1]:1,[fe80::2]:2"
    assert await static_target(["localhost:7", "127.0.0.1:7"]) == "ipv4:127.0.0.1:7"  # resolved, then deduplicated
    assert await static_target(["10.0.0.5:1", "[::1]:2"]) == "ipv4:10.0.0.5:1"  # one family per target
    assert await static_target(["no-such-host.invalid:1"]) is None


def test_balanced_options_add_round_robin_and_the_name_tls_checks() -> None:
    round_robin = ("grpc.lb_policy_name", "round_robin")
    assert balanced_options([], ["10.0.0.5:1", "10.0.0.6:1"], tls=False) == [round_robin]
    mine = [("grpc.lb_policy_name", "pick_first"), ("grpc.max_receive_message_length", 1)]
    assert balanced_options(mine, ["10.0.0.5:1"], tls=False) == mine  # the caller's policy wins
    # With TLS the static target names no host: the instances' shared host is the name to verify.
    assert balanced_options([], ["svc.internal:1", "svc.internal:2"], tls=True) == [
        round_robin,
        ("grpc.ssl_target_name_override", "svc.internal"),
    ]
    assert balanced_options([], ["[::1]:1"], tls=True)[-1] == ("grpc.ssl_target_name_override", "::1")
    with pytest.raises(InvalidArgumentError, match=r"instances are on a\.internal, b\.internal: pass options"):
        balanced_options([], ["a.internal:1", "b.internal:1"], tls=True)
    named = [("grpc.ssl_target_name_override", "svc")]
    assert balanced_options(named, ["a.internal:1", "b.internal:1"], tls=True) == [*named, round_robin]


# The status writer keeps each transaction within etcd's limit -----------------------------------


async def test_writer_batches_statuses_with_their_endpoints_within_etcds_txn_limit(
    etcd_endpoint: str, key_prefix: str
) -> None:
    keys = registry_keys(key_prefix)
    now = datetime.now(UTC)
    status = HealthStatus(status="passing", since=now, checked_at=now)
    instances = [InstanceKey("grpc", "api", f"10.0.{i // 250}.{i % 250}:50051") for i in range(130)]
    async with EtcdClient([etcd_endpoint]) as etcd:
        always = Compare(f"{key_prefix}no-such-key".encode(), "version", "==", 0)  # stands for the leader's fence
        writer = StatusWriter(etcd, keys, lambda: always, lambda: [])
        for key in instances:  # 260 operations: etcd refuses a transaction of more than 128
            writer.set(key, status, alive_changed=False)
            writer.set_endpoint(key, endpoint_to_json(key.addr))
        for i in range(130):  # endpoints alone too, to delete (nothing there: still an operation each)
            writer.set_endpoint(InstanceKey("grpc", "gone", f"10.1.0.{i}:1"), None)
        await writer.flush()
        assert writer.writes == 390 + 1  # and the alive document, which a new writer always writes once
        found = await RegistryStore(etcd, keys).endpoints("api")
        assert found == {key: endpoint_to_json(key.addr).encode() for key in instances}
        assert len(await RegistryStore(etcd, keys).statuses("grpc", "api")) == 130


# The hub publishes, removes and reconciles ------------------------------------------------------


class WhoamiServer(GrpcHealthServer):
    """A gRPC health server that also answers ``WHOAMI`` with its address, to tell who served a call."""

    async def start(self) -> None:  # GrpcHealthServer.start, plus the WHOAMI handler
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        servicer = health_aio.HealthServicer()
        for service, value in self._statuses.items():
            await servicer.set(service, value)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        name = grpc.unary_unary_rpc_method_handler(lambda request, context: self.addr.encode())
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("kk.test.Whoami", {"Name": name})])
        server.add_insecure_port(self.addr)
        await server.start()
        self._server, self._servicer = server, servicer


def endpoint_values(etcdctl: EtcdCtl, keys: RegistryKeys, name: str | None = None) -> dict[str, Any]:
    """Endpoint keys under the root (or one service's target) as etcdctl reads them: key -> parsed JSON."""
    prefix = f"{keys.endpoint_target(name)}/" if name is not None else keys.endpoints
    kvs = json.loads(etcdctl("get", prefix, "--prefix", "-w", "json").stdout).get("kvs") or []
    return {base64.b64decode(kv["key"]).decode(): json.loads(base64.b64decode(kv["value"])) for kv in kvs}


def endpoints_are(etcdctl: EtcdCtl, keys: RegistryKeys, expected: dict[str, Any]) -> Callable[[], bool]:
    return lambda: endpoint_values(etcdctl, keys) == expected


async def answerers(channel: grpc.aio.Channel, calls: int = 12) -> set[str]:
    whoami = channel.unary_unary(WHOAMI)
    return {(await whoami(b"", timeout=5)).decode() for _ in range(calls)}


async def test_alive_grpc_instances_are_published_and_removed_as_their_health_changes(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    keys = registry_keys(key_prefix)
    async with (
        WhoamiServer() as a,
        WhoamiServer() as b,
        WhoamiServer() as c,
        HttpHealthServer() as web,
        EtcdClient([etcd_endpoint]) as etcd,
        running_hub(etcd, keys),
        ServiceRegistry(etcd=etcd, prefix=keys.root) as registry,
    ):
        servers = {s.addr: s for s in (a, b, c)}
        for server in servers.values():
            await register(etcd, keys, "api", server.addr, "grpc", metadata={"zone": "z1"}, failures_before_critical=1)
        web_key = await register(etcd, keys, "api", web.addr, "http")  # same name, HTTP: never an endpoint

        def published(*addrs: str) -> dict[str, Any]:
            return {keys.endpoint("api", x): {"Op": 0, "Addr": x, "Metadata": None} for x in addrs}

        await eventually(endpoints_are(etcdctl, keys, published(a.addr, b.addr, c.addr)), "all three published")
        await wait_status(etcd, keys, web_key, "passing")
        assert endpoint_values(etcdctl, keys) == published(a.addr, b.addr, c.addr), "the HTTP instance got one"
        assert await registry.grpc_endpoints("api") == sorted(servers)

        # NOT_SERVING: critical, and its endpoint goes; the others stay.
        await b.set_status("", "NOT_SERVING")
        await eventually(endpoints_are(etcdctl, keys, published(a.addr, c.addr)), "b's endpoint removed")
        assert await registry.grpc_endpoints("api") == sorted([a.addr, c.addr])
        # A client resolving through the endpoint keys reaches a and c, never b (which still answers calls).
        async with registry.grpc_channel("api", balanced=True) as channel:
            seen: set[str] = set()

            async def both_reached() -> bool:
                seen.update(await answerers(channel))
                return seen >= {a.addr, c.addr}

            await eventually(both_reached, "round robin reaches both healthy servers")
            assert seen == {a.addr, c.addr}, "a call reached the unhealthy server"

        await b.set_status("", "SERVING")
        await eventually(endpoints_are(etcdctl, keys, published(a.addr, b.addr, c.addr)), "b published again")

        # New metadata, same check: the endpoint stays as it is; the SDK reads metadata from the registration.
        await register(etcd, keys, "api", a.addr, "grpc", metadata={"zone": "z2"}, failures_before_critical=1)
        zones = {i.addr: i.metadata for i in await eventually(lambda: _zone_moved(registry, a.addr), "new metadata")}
        assert zones == {a.addr: {"zone": "z2"}, b.addr: {"zone": "z1"}, c.addr: {"zone": "z1"}}
        moved = published(a.addr, b.addr, c.addr)
        assert endpoint_values(etcdctl, keys) == moved

        await registry.service.deregister("api", c.addr, "grpc")
        del moved[keys.endpoint("api", c.addr)]
        await eventually(endpoints_are(etcdctl, keys, moved), "c's endpoint removed with its registration")
        async with registry.grpc_channel("api", balanced=True) as channel:
            await eventually(
                lambda: _answered_by(channel, {a.addr, b.addr}), "round robin over the two left", within=10
            )


async def _zone_moved(registry: ServiceRegistry, addr: str) -> list[Instance] | None:
    instances = await registry.alive("api", "grpc")
    return instances if any(i.addr == addr and i.metadata == {"zone": "z2"} for i in instances) else None


async def _answered_by(channel: grpc.aio.Channel, expected: set[str]) -> bool:
    found = await answerers(channel)
    assert found <= expected, f"answered by {found - expected}, which has no endpoint"
    return found == expected


async def test_invalid_registration_loses_its_endpoint(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    keys = registry_keys(key_prefix)
    async with GrpcHealthServer() as server, EtcdClient([etcd_endpoint]) as etcd, running_hub(etcd, keys):
        key = await register(etcd, keys, "api", server.addr, "grpc")
        endpoint = {keys.endpoint("api", server.addr): {"Op": 0, "Addr": server.addr, "Metadata": None}}
        await eventually(endpoints_are(etcdctl, keys, endpoint), "the endpoint is published")

        etcdctl("put", keys.registration(key), '{"CheckConfig": {"Type": "Grpc", "Timeout": "soon"}}')
        await eventually(endpoints_are(etcdctl, keys, {}), "the invalid registration's endpoint is removed")
        assert (await wait_status(etcd, keys, key, "critical")).output.startswith("invalid registration")


async def test_sync_removes_stale_endpoints_and_puts_missing_ones(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    keys = registry_keys(key_prefix)
    dead = f"{HOST}:{free_port()}"
    async with GrpcHealthServer() as server, EtcdClient([etcd_endpoint]) as etcd:
        # As a hub that died left things: an endpoint whose registration is gone, one of an instance that
        # is critical now, one in a format nobody wrote; and an alive instance without its endpoint.
        alive = await register(etcd, keys, "api", server.addr, "grpc")
        critical = await register(etcd, keys, "api", dead, "grpc")
        now = datetime.now(UTC)
        passing = HealthStatus(status="passing", since=now, checked_at=now, checker="dead-hub")
        await etcd.put(keys.status(alive), status_to_json(passing))
        await etcd.put(keys.status(critical), status_to_json(passing.model_copy(update={"status": "critical"})))
        await etcd.put(keys.endpoint("gone", "10.9.9.9:1"), endpoint_to_json("10.9.9.9:1"))
        await etcd.put(keys.endpoint("api", dead), endpoint_to_json(dead))
        await etcd.put(keys.endpoint("api", server.addr), '{"Op":0,"Addr":"10.9.9.9:1"}')  # not what it should be
        async with running_hub(etcd, keys):
            expected = {keys.endpoint("api", server.addr): {"Op": 0, "Addr": server.addr, "Metadata": None}}
            await eventually(endpoints_are(etcdctl, keys, expected), "only the alive instance's endpoint is left")


async def test_balanced_channel_without_published_endpoints_raises_not_found(
    etcd_endpoint: str, key_prefix: str
) -> None:
    keys = registry_keys(key_prefix)
    async with ServiceRegistry([etcd_endpoint], prefix=keys.root) as registry:
        with pytest.raises(NotFoundError, match=f"no alive gRPC instance of api is published under {keys.root}"):
            async with registry.grpc_channel("api", balanced=True):
                raise AssertionError("a channel to nothing")
        assert await registry.grpc_endpoints("api") == []


async def test_health_service_through_a_balanced_channel(etcd_endpoint: str, key_prefix: str) -> None:
    """The plain case a client would write: grpc.health.v1 through the SDK's balanced channel."""
    keys = registry_keys(key_prefix)
    async with (
        GrpcHealthServer() as server,
        EtcdClient([etcd_endpoint]) as etcd,
        running_hub(etcd, keys),
        ServiceRegistry(etcd=etcd, prefix=keys.root) as registry,
    ):
        await register(etcd, keys, "api", server.addr, "grpc")
        await eventually(lambda: registry.grpc_endpoints("api"), "the endpoint is published")
        async with registry.grpc_channel("api", balanced=True) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_balanced_channel_uses_tls_when_the_checks_do(
    etcd_endpoint: str, key_prefix: str, tmp_path: Path
) -> None:
    keys = registry_keys(key_prefix)
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert(HOST)  # the balanced channel dials IPs: the certificate names the IP
    tls = (b"".join(pem.bytes() for pem in leaf.cert_chain_pems), leaf.private_key_pem.bytes())
    async with (
        GrpcHealthServer(tls=tls) as one,
        GrpcHealthServer(tls=tls) as two,
        GrpcHealthServer() as plain,
        EtcdClient([etcd_endpoint]) as etcd,
        running_hub(etcd, keys),
        ServiceRegistry(etcd=etcd, prefix=keys.root) as registry,
    ):
        for server in (one, two):
            await register(etcd, keys, "secure", server.addr, "grpc", tls=True, ca_file=str(ca_file))
        await eventually(lambda: _published_count(registry, "secure", 2), "both TLS instances are published")
        async with registry.grpc_channel("secure", balanced=True) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        # One plain instance among TLS ones: no single channel reaches them all, and the SDK says so.
        await register(etcd, keys, "secure", plain.addr, "grpc")
        await eventually(lambda: _published_count(registry, "secure", 3), "the plain instance is published")
        with pytest.raises(KkEtcdError, match="disagree on TLS"):
            async with registry.grpc_channel("secure", balanced=True):
                raise AssertionError("a channel that cannot reach every instance")


async def _published_count(registry: ServiceRegistry, name: str, count: int) -> bool:
    return len(await registry.grpc_endpoints(name)) == count


async def test_a_ca_file_the_sdk_cannot_read_is_an_invalid_argument(
    etcd_endpoint: str, key_prefix: str, tmp_path: Path
) -> None:
    keys = registry_keys(key_prefix)
    missing = tmp_path / "missing-ca.pem"
    addr = f"{HOST}:{free_port()}"
    async with EtcdClient([etcd_endpoint]) as etcd, ServiceRegistry(etcd=etcd, prefix=keys.root) as registry:
        await register(etcd, keys, "secure", addr, "grpc", tls=True, ca_file=str(missing))
        await etcd.put(keys.endpoint("secure", addr), endpoint_to_json(addr))  # as a hub publishes it
        with pytest.raises(InvalidArgumentError, match=f"cannot read CA file {missing}, .*No such file"):
            async with registry.grpc_channel("secure", balanced=True):
                raise AssertionError("a TLS channel without its CA file")
