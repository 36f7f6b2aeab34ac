"""kk_etcd_go must read what we write where it reads (kk_etcd_mcp/registry/wire.py has the contract).

Two judges: the golden documents kk_etcd_go's own code produced (tests/interop/kk_etcd_go/), compared
byte for byte (registrations with protojson's varying whitespace removed); and a Go program
(tests/go/kk_etcd_go_judge) that reads a real etcd the way kk_etcd_go does, after our hub wrote it: strict
protojson for every registration, encoding/json for the alive document.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import EtcdCtl
from go_programs import build
from health_servers import GrpcHealthServer, HttpHealthServer
from mcp import Client
from mcp_helpers import call, served
from polling import eventually

from kk_etcd_mcp.registry import InstanceKey, Registration
from kk_etcd_mcp.registry.model import CheckSpec
from kk_etcd_mcp.registry.wire import (
    alive_document,
    alive_entry_json,
    extension_to_json,
    registration_from_documents,
    registration_to_json,
)

GOLDEN = Path(__file__).parent / "interop" / "kk_etcd_go"

GO_RPC = Registration(
    type="grpc", name="go-rpc", addr="10.0.0.5:50051", check=CheckSpec(type="grpc", addr="10.0.0.5:50051")
)
GO_WEB = Registration(
    type="http",
    name="go-web",
    addr="10.0.0.6:8080",
    check=CheckSpec(type="http", addr="http://10.0.0.6:8080/KKHealthCheck", timeout=1.5, interval=3),
)


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes().rstrip(b"\n")


def compact(document: bytes) -> str:
    """protojson's output without its whitespace, which varies from build to build."""
    return json.dumps(json.loads(document), separators=(",", ":"), ensure_ascii=False)


# Golden documents (no I/O) -------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "reg"), [("registration-grpc.json", GO_RPC), ("registration-http.json", GO_WEB)])
def test_kk_etcd_go_registrations_read_and_written_byte_for_byte(file: str, reg: Registration) -> None:
    key = InstanceKey(reg.type, reg.name, reg.addr)
    assert registration_from_documents(key, golden(file), None) == reg
    assert registration_to_json(reg) == compact(golden(file))
    # With our own key beside it, kk_etcd_go's key still holds exactly its document.
    rich = reg.model_copy(update={"metadata": {"zone": "a"}, "weight": 3})
    assert registration_to_json(rich) == compact(golden(file))
    assert registration_from_documents(key, golden(file), extension_to_json(rich).encode()) == rich


def test_the_alive_document_is_the_one_kk_etcd_go_writes_byte_for_byte() -> None:
    entries = [(InstanceKey(r.type, r.name, r.addr), alive_entry_json(r) or "") for r in (GO_WEB, GO_RPC)]
    assert alive_document(entries) == golden("alive-document.json").decode()


def test_go_escapes_in_the_alive_document() -> None:
    odd = Registration(
        type="http", name="a<b>&c", addr="h:1", check=CheckSpec(type="http", addr="http://h:1/?x=<1>&y=é")
    )
    entry = alive_entry_json(odd)
    assert entry is not None
    assert r"a\u003cb\u003e\u0026c" in entry and r"?x=\u003c1\u003e\u0026y=é" in entry  # as encoding/json writes
    assert json.loads(entry)["ServiceName"] == "a<b>&c"


# The Go judge ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def judge(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, Any]]:
    binary = build("kk_etcd_go_judge", tmp_path_factory.mktemp("go"))

    def run(*args: str) -> dict[str, Any]:
        done = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60, check=True)
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    return run


def test_the_judge_decodes_as_kk_etcd_go_does(judge: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    """The judge against kk_etcd_go's own documents and the decoder behaviour kk_etcd_go showed."""

    def decode(kind: str, value: bytes | str) -> dict[str, Any]:
        path = tmp_path / "value.json"
        path.write_bytes(value if isinstance(value, bytes) else value.encode())
        return judge(kind, str(path))

    for file in ("registration-grpc.json", "registration-http.json"):
        assert json.loads(compact(golden(file))) == decode("registration", golden(file))["decoded"]
    assert decode("alive", golden("alive-document.json")) == {"reencoded": golden("alive-document.json").decode()}

    ours_before = json.loads(golden("registration-grpc.json")) | {"Weight": 3, "Metadata": {"a": "b"}}
    assert "unknown field" in decode("registration", json.dumps(ours_before))["error"]
    tcp = json.loads(golden("registration-grpc.json")) | {"ServiceType": "Tcp"}
    assert "invalid value for enum" in decode("registration", json.dumps(tcp))["error"]
    alive_with_names = {"Grpc-go-rpc": [json.loads(golden("registration-grpc.json"))]}
    assert "cannot unmarshal string" in decode("alive", json.dumps(alive_with_names))["error"]


def _expected_go_document(reg: dict[str, Any]) -> dict[str, Any]:
    return {
        "ServiceType": reg["type"],
        "ServiceName": reg["name"],
        "ServiceAddr": reg["addr"],
        "CheckConfig": reg["check"],
    }


@pytest.mark.anyio
async def test_kk_etcd_go_decodes_everything_our_hub_and_tools_write(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, judge: Callable[..., dict[str, Any]]
) -> None:
    root = f"{key_prefix}kk_service/"
    fast = {"interval": 1, "timeout": 1}
    async with (
        HttpHealthServer() as web,
        GrpcHealthServer() as rpc,
        HttpHealthServer() as other,
        served(etcd_endpoint, registry_prefix=root, toolsets="registry") as client,
    ):
        # Everything kk_etcd_go lacks: metadata, weight, thresholds, TLS, a Tcp type, a Tcp check.
        await call(client, "service_register", name="web", addr=web.addr, metadata={"v": "1"}, weight=3,
                   check=fast | {"failures_before_critical": 2, "deregister_critical_after": "1h"})  # fmt: skip
        await call(client, "service_register", name="rpc", addr=rpc.addr, type="grpc",
                   check=fast | {"grpc_service": "", "success_before_passing": 2}, metadata={"zone": "a"})  # fmt: skip
        await call(client, "service_register", name="db", addr=other.addr, type="tcp", check=fast)
        await call(client, "service_register", name="port", addr=other.addr, check=fast | {"type": "tcp"})
        await _all_passing(client, 4)
        alive = await eventually(lambda: _alive_groups(etcdctl, root, 2), "web and rpc in the alive document")

        report = judge("etcd", etcd_endpoint, root)
        registrations = report["registrations"]
        assert set(registrations) == {
            f"{root}registration/Http/web/{web.addr}",
            f"{root}registration/Grpc/rpc/{rpc.addr}",
        }
        for found in registrations.values():
            assert "error" not in found and "check_error" not in found, found
        assert registrations[f"{root}registration/Http/web/{web.addr}"]["decoded"] == {
            "ServiceType": "Http", "ServiceName": "web", "ServiceAddr": web.addr,
            "CheckConfig": {"Type": "Http", "Timeout": "1s", "Interval": "1s", "Addr": f"http://{web.addr}/KKHealthCheck"},
        }  # fmt: skip
        assert registrations[f"{root}registration/Grpc/rpc/{rpc.addr}"]["decoded"]["CheckConfig"]["Type"] == "Grpc"
        assert report["alive"] == {"reencoded": alive}, "kk_etcd_go's encoding/json writes the same bytes"
        assert sorted(json.loads(alive)) == ["Grpc-rpc", "Http-web"]

        # Our tools still see all of it.
        listed = {i["name"]: i for i in (await call(client, "service_list"))["instances"]}
        assert (listed["web"]["metadata"], listed["web"]["weight"]) == ({"v": "1"}, 3)
        assert listed["web"]["check"]["deregister_critical_after"] == 3600
        assert (listed["rpc"]["check"]["success_before_passing"], listed["rpc"]["metadata"]) == (2, {"zone": "a"})
        assert (listed["db"]["type"], listed["port"]["check"]["type"]) == ("tcp", "tcp")


@pytest.mark.anyio
async def test_registrations_in_the_old_layout_are_read_and_rewritten_by_the_hub(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, judge: Callable[..., dict[str, Any]]
) -> None:
    """What older versions wrote at kk_etcd_go's key (our fields, Tcp) stays registered, keeps its lease,
    and the leading hub moves it into today's layout, after which kk_etcd_go reads every key again."""
    root = f"{key_prefix}kk_service/"
    async with HttpHealthServer() as web, HttpHealthServer() as db:
        old_web = {
            "ServiceType": "Http", "ServiceName": "web", "ServiceAddr": web.addr,
            "CheckConfig": {"Type": "Http", "Timeout": "1s", "Interval": "1s", "Addr": f"http://{web.addr}/KKHealthCheck",
                            "SuccessBeforePassing": 1, "FailuresBeforeCritical": 5},
            "Metadata": {"v": "old"}, "Weight": 2,
        }  # fmt: skip
        old_db = {
            "ServiceType": "Tcp", "ServiceName": "db", "ServiceAddr": db.addr,
            "CheckConfig": {"Type": "Tcp", "Timeout": "1s", "Interval": "1s", "Addr": db.addr},
        }  # fmt: skip
        lease = etcdctl("lease", "grant", "600").stdout.split()[1]
        etcdctl("put", f"{root}registration/Http/web/{web.addr}", json.dumps(old_web), f"--lease={lease}")
        etcdctl("put", f"{root}registration/Tcp/db/{db.addr}", json.dumps(old_db))
        assert "error" in json.dumps(judge("etcd", etcd_endpoint, root)), "kk_etcd_go cannot read the old layout"

        async with served(etcd_endpoint, registry_prefix=root, toolsets="registry") as client:
            await _all_passing(client, 2)

            def rewritten() -> bool:
                report = judge("etcd", etcd_endpoint, root)["registrations"]
                return list(report) == [f"{root}registration/Http/web/{web.addr}"] and "decoded" in next(
                    iter(report.values())
                )

            await eventually(rewritten, "the hub rewrote the old registrations")
            listed = {i["name"]: i for i in (await call(client, "service_list"))["instances"]}
            assert (listed["web"]["metadata"], listed["web"]["weight"]) == ({"v": "old"}, 2)
            assert listed["web"]["check"]["failures_before_critical"] == 5
            assert listed["web"]["lease"] == int(lease, 16) and listed["db"]["type"] == "tcp"
        ours = json.loads(etcdctl("get", f"{root}registration_ext/", "--prefix", "-w", "json").stdout)["kvs"]
        assert len(ours) == 2 and {kv.get("lease", 0) for kv in ours} == {int(lease, 16), 0}


async def _all_passing(client: Client, count: int) -> None:
    async def passing() -> bool:
        instances = (await call(client, "service_list"))["instances"]
        return len(instances) == count and all(i["status"] == "passing" for i in instances)

    await eventually(passing, f"{count} instances passing")


def _alive_groups(etcdctl: EtcdCtl, root: str, groups: int) -> str | None:
    value = etcdctl("get", f"{root}alive/", "--print-value-only").stdout.rstrip("\n")
    return value if value and len(json.loads(value)) == groups else None
