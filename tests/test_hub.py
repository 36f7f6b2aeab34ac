"""The hub in-process (HubRunner) against the session etcd and real HTTP and gRPC servers.

Every test has its own registry root, so hubs of different tests never share a leader key. Checks run
every second; conditions are polled with generous deadlines and no test asserts on elapsed time. Where a
count matters (failures before critical), it is counted on the server side or at the transition itself.
"""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime

import anyio
import pytest
from conftest import EtcdCtl
from health_servers import GrpcHealthServer, HttpHealthServer, established_connections
from registry_helpers import (
    FAST,
    active_hub,
    eventually,
    leader_keys,
    monitor_of,
    register,
    registry_keys,
    running_hub,
    status_kv,
    status_of,
    wait_status,
)

from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.etcd.embedded import free_port
from kk_etcd_mcp.registry import CheckOptions, HealthStatus, HubRunner, InstanceKey, RegistryKeys, status_writer
from kk_etcd_mcp.registry.checkers import Prober
from kk_etcd_mcp.registry.leadership import HubMode
from kk_etcd_mcp.registry.live_status import HubLiveStatus
from kk_etcd_mcp.registry.service import RegistryService
from kk_etcd_mcp.registry.store import RegistryStore
from kk_etcd_mcp.registry.wire import status_to_json

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["leader", "sharded"])
def hub_mode(request: pytest.FixtureRequest) -> HubMode:
    """Every test here runs with a hub of each mode: alone, a sharded hub owns every instance."""
    mode: HubMode = request.param
    return mode


async def alive_doc(etcd: EtcdClient, keys: RegistryKeys) -> dict[str, list[dict[str, object]]] | None:
    kv = await etcd.get(keys.alive)
    return json.loads(kv.value) if kv is not None else None


async def test_http_passing_then_critical_after_threshold_then_passing(
    etcd_endpoint: str, key_prefix: str, hub_mode: HubMode
) -> None:
    keys = registry_keys(key_prefix)
    server = HttpHealthServer()
    runners: list[HubRunner] = []
    # At each transition (called synchronously by the check loop): requests the server got, checks the hub began.
    transitions: list[tuple[str, int, int]] = []

    def record(key: InstanceKey, status: HealthStatus) -> None:
        transitions.append((status.status, server.requests, active_hub(runners[0]).stats.checks))

    async with (
        server,
        EtcdClient([etcd_endpoint]) as etcd,
        running_hub(etcd, keys, on_transition=record, mode=hub_mode) as runner,
    ):
        runners.append(runner)
        key = await register(etcd, keys, "web", server.addr, failures_before_critical=3)
        passing = await wait_status(etcd, keys, key, "passing")
        assert passing.checker == runner.hub_id
        assert passing.output.startswith(f"HTTP GET {server.check_url}: 200")

        # Failing answers: critical at the third one exactly, counted where the checks arrive.
        transitions.clear()
        failing_from = server.requests  # the handler does not await: every later request gets 500
        server.status = 500
        critical = await wait_status(etcd, keys, key, "critical")
        assert transitions[0][:2] == ("critical", failing_from + 3), "critical after the wrong number of failures"
        assert "500" in critical.output
        assert critical.since > passing.since

        server.status = 200
        await wait_status(etcd, keys, key, "passing")

        # A stopped server: critical after failures_before_critical checks, not at the first failure.
        transitions.clear()
        checks_at_stop = active_hub(runner).stats.checks
        await server.stop()
        await wait_status(etcd, keys, key, "critical")
        # One check may have been in flight at the stop (and passed or failed); at least two began after it.
        assert transitions[0][0] == "critical"
        assert transitions[0][2] - checks_at_stop >= 2, "critical before failures_before_critical checks"

        await server.start()
        back = await wait_status(etcd, keys, key, "passing")
        assert back.output.startswith(f"HTTP GET {server.check_url}: 200")


async def test_grpc_serving_passes_and_not_serving_is_critical(
    etcd_endpoint: str, key_prefix: str, hub_mode: HubMode
) -> None:
    keys = registry_keys(key_prefix)
    async with (
        GrpcHealthServer() as server,
        EtcdClient([etcd_endpoint]) as etcd,
        running_hub(etcd, keys, mode=hub_mode),
    ):
        key = await register(etcd, keys, "api", server.addr, "grpc", failures_before_critical=1)
        passing = await wait_status(etcd, keys, key, "passing")
        assert passing.output == f"gRPC check {server.addr}: SERVING"

        await server.set_status("", "NOT_SERVING")
        critical = await wait_status(etcd, keys, key, "critical")
        assert "NOT_SERVING" in critical.output

        await server.set_status("", "SERVING")
        await wait_status(etcd, keys, key, "passing")
    assert server.check_calls >= 3


async def test_deregister_stops_the_loop_and_removes_the_status(
    etcd_endpoint: str, key_prefix: str, hub_mode: HubMode
) -> None:
    keys = registry_keys(key_prefix)
    async with (
        HttpHealthServer() as server,
        HttpHealthServer() as other,
        EtcdClient([etcd_endpoint]) as etcd,
        Prober() as prober,
        running_hub(etcd, keys, mode=hub_mode) as runner,
    ):
        service = RegistryService(etcd, keys, prober, HubLiveStatus(runner))
        await service.register("web", server.addr, "http", check=CheckOptions(**FAST))
        await service.register("web", other.addr, "http", check=CheckOptions(**FAST))
        key, other_key = InstanceKey("http", "web", server.addr), InstanceKey("http", "web", other.addr)
        await wait_status(etcd, keys, key, "passing")
        await wait_status(etcd, keys, other_key, "passing")

        await service.deregister("web", server.addr, "http")
        await eventually(lambda: monitor_of(runner, key) is None, "the monitor is gone")
        await eventually(lambda: _missing(etcd, keys.status(key)), "the status key is gone")
        assert monitor_of(runner, other_key) is not None, "only that instance is deregistered"
        assert (await status_of(etcd, keys, other_key)) is not None

        # No check outlives its registration (a negative: it needs some waiting). A request already on its
        # way at the deregistration lands within one interval, so count from one check of the other later.
        other_at = other.requests
        await eventually(lambda: other.requests >= other_at + 1, "the other instance is still checked")
        stopped_at, other_at = server.requests, other.requests
        await eventually(lambda: other.requests >= other_at + 2, "the other instance is still checked")
        assert server.requests == stopped_at, "the deregistered instance is still checked"


async def _missing(etcd: EtcdClient, key: str) -> bool:
    return await etcd.get(key) is None


async def test_metadata_change_keeps_the_loop_but_a_new_check_restarts_it(
    etcd_endpoint: str, key_prefix: str, hub_mode: HubMode
) -> None:
    keys = registry_keys(key_prefix)
    async with (
        HttpHealthServer() as server,
        EtcdClient([etcd_endpoint]) as etcd,
        running_hub(etcd, keys, mode=hub_mode) as runner,
    ):
        key = await register(etcd, keys, "web", server.addr, metadata={"v": "1"})
        passing = await wait_status(etcd, keys, key, "passing")
        monitor = monitor_of(runner, key)
        assert monitor is not None

        await register(etcd, keys, "web", server.addr, metadata={"v": "2"})  # same check
        await eventually(
            lambda: (m := monitor_of(runner, key)) is not None and m.registration.metadata == {"v": "2"},
            "the hub saw the new metadata",
        )
        assert monitor_of(runner, key) is monitor and not monitor.scope.cancel_called, "the loop was restarted"
        # The alive document is kk_etcd_go's: it never carries our metadata.
        document = await eventually(lambda: _alive_with(etcd, keys, 1), "the instance in the alive document")
        assert "Metadata" not in document["Http-web"][0]

        await register(etcd, keys, "web", server.addr, metadata={"v": "2"}, interval=2)  # a new check spec
        restarted = await eventually(
            lambda: (m := monitor_of(runner, key)) is not None and m is not monitor and m,
            "the loop restarted for the new interval",
        )
        assert restarted.registration.check.interval == 2.0
        assert monitor.scope.cancel_called, "the old loop was stopped"
        # The status carries over the restart: no false transition, no rewrite.
        checks = restarted.checked_at
        await eventually(lambda: restarted.checked_at is not None and restarted.checked_at != checks, "a new check")
        assert restarted.state.status == "passing"
        status = await status_kv(etcd, keys, key)
        assert status is not None and status.version == 1
        assert (await status_of(etcd, keys, key)) == passing


async def test_invalid_registrations_are_reported_and_the_others_still_checked(
    etcd_endpoint: str, key_prefix: str, hub_mode: HubMode, etcdctl: EtcdCtl
) -> None:
    keys = registry_keys(key_prefix)
    bad_json = InstanceKey("http", "broken", "127.0.0.1:1")
    bad_duration = InstanceKey("grpc", "broken", "127.0.0.1:2")
    async with (
        HttpHealthServer() as server,
        EtcdClient([etcd_endpoint]) as etcd,
        running_hub(etcd, keys, mode=hub_mode) as runner,
    ):
        hub = active_hub(runner)
        good = await register(etcd, keys, "web", server.addr)
        await wait_status(etcd, keys, good, "passing")

        etcdctl("put", keys.registration(bad_json), "{this is not json")
        etcdctl("put", keys.registration(bad_duration), '{"CheckConfig": {"Type": "Grpc", "Timeout": "5 seconds"}}')
        reported = await wait_status(etcd, keys, bad_json, "critical")
        assert reported.output.startswith("registration is not valid JSON")
        assert reported.checker == runner.hub_id
        reported = await wait_status(etcd, keys, bad_duration, "critical")
        assert "not a duration: '5 seconds'" in reported.output
        assert monitor_of(runner, bad_json) is None and monitor_of(runner, bad_duration) is None

        before = server.requests
        await eventually(lambda: server.requests >= before + 2, "the valid instance is still checked")
        assert runner.hub is hub, "the hub started over"
        assert (await status_of(etcd, keys, good)).status == "passing"  # type: ignore[union-attr]

        # Fixed in place: checked from then on.
        async with HttpHealthServer() as fixed:
            repaired = InstanceKey("http", "repaired", fixed.addr)
            etcdctl("put", keys.registration(repaired), "[]")
            await wait_status(etcd, keys, repaired, "critical")
            await register(etcd, keys, "repaired", fixed.addr)
            await wait_status(etcd, keys, repaired, "passing")
        assert runner.hub is hub


async def test_status_written_only_on_transitions_and_alive_document(
    etcd_endpoint: str, key_prefix: str, hub_mode: HubMode
) -> None:
    keys = registry_keys(key_prefix)
    async with (
        HttpHealthServer() as one,
        HttpHealthServer() as two,
        EtcdClient([etcd_endpoint]) as etcd,
        running_hub(etcd, keys, mode=hub_mode),
    ):
        key_one = await register(etcd, keys, "web", one.addr, failures_before_critical=1)
        key_two = await register(etcd, keys, "web", two.addr, failures_before_critical=1)
        await wait_status(etcd, keys, key_one, "passing")
        await wait_status(etcd, keys, key_two, "passing")

        document = await eventually(lambda: _alive_with(etcd, keys, 2), "both instances in the alive document")
        assert list(document) == ["Http-web"]
        entries = sorted(document["Http-web"], key=lambda e: e["ServiceAddr"])
        for entry, server in zip(entries, sorted([one, two], key=lambda s: s.addr), strict=True):
            assert entry == {  # as Go's encoding/json writes kk_etcd_go's type: numeric enums, Duration objects
                "ServiceType": 1,
                "ServiceName": "web",
                "ServiceAddr": server.addr,
                "CheckConfig": {
                    "Type": 1,
                    "Timeout": {"seconds": 1},
                    "Interval": {"seconds": 1},
                    "Addr": server.check_url,
                },
            }

        # Several passing checks later, the status key is still the one written at the transition.
        start = one.requests
        await eventually(lambda: one.requests >= start + 3, "three more checks")
        kv = await status_kv(etcd, keys, key_one)
        assert kv is not None and kv.version == 1, "a status was rewritten without a change"

        await two.stop()
        await wait_status(etcd, keys, key_two, "critical")
        document = await eventually(lambda: _alive_with(etcd, keys, 1), "the critical instance leaves alive")
        assert [e["ServiceAddr"] for e in document["Http-web"]] == [one.addr]
        kv = await status_kv(etcd, keys, key_one)
        assert kv is not None and kv.version == 1


async def _alive_with(etcd: EtcdClient, keys: RegistryKeys, count: int) -> dict[str, list[dict[str, object]]] | None:
    document = await alive_doc(etcd, keys)
    if document is None or sum(len(entries) for entries in document.values()) != count:
        return None
    return document


async def test_deregister_critical_after_deletes_the_registration(
    etcd_endpoint: str, key_prefix: str, hub_mode: HubMode
) -> None:
    keys = registry_keys(key_prefix)
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    async with (
        HttpHealthServer() as server,
        EtcdClient([etcd_endpoint]) as etcd,
        running_hub(etcd, keys, mode=hub_mode) as runner,
    ):
        key = await register(etcd, keys, "web", dead, failures_before_critical=1, deregister_critical_after=1)
        kept = await register(etcd, keys, "web", server.addr, failures_before_critical=1, deregister_critical_after=1)
        await eventually(lambda: _missing(etcd, keys.registration(key)), "the dead instance is deregistered")
        await eventually(lambda: monitor_of(runner, key) is None, "its monitor is gone")
        await eventually(lambda: _missing(etcd, keys.status(key)), "its status is gone")
        assert await etcd.get(keys.registration(kept)) is not None, "a passing instance was deregistered"
        assert (await status_of(etcd, keys, kept)).status == "passing"  # type: ignore[union-attr]


async def test_stale_statuses_are_removed_at_hub_start(etcd_endpoint: str, key_prefix: str, hub_mode: HubMode) -> None:
    keys = registry_keys(key_prefix)
    stale = InstanceKey("http", "gone", "127.0.0.1:1")
    async with HttpHealthServer() as server, EtcdClient([etcd_endpoint]) as etcd:
        kept = await register(etcd, keys, "web", server.addr)
        now = datetime.now(UTC)
        old = HealthStatus(status="passing", output="HTTP 200", since=now, checked_at=now, checker="old-hub")
        await etcd.put(keys.status(stale), status_to_json(old))
        await etcd.put(keys.status(kept), status_to_json(old))
        async with running_hub(etcd, keys, mode=hub_mode) as runner:
            await eventually(lambda: _missing(etcd, keys.status(stale)), "the stale status is removed")
            await eventually(lambda: monitor_of(runner, kept) is not None, "the registered instance is checked")
            await eventually(lambda: server.requests >= 2, "two checks")
            # The registered instance keeps its stored status: the hub started from it, not from critical.
            if hub_mode == "leader":
                assert (await status_of(etcd, keys, kept)) == old
            else:  # the same status and since, now naming the hub that took it over
                taken = (old.status, old.since, runner.hub_id)
                await eventually(lambda: _status_is(etcd, keys, kept, taken), "the status names its new checker")


async def _status_is(
    etcd: EtcdClient, keys: RegistryKeys, key: InstanceKey, expected: tuple[str, datetime | None, str | None]
) -> bool:
    """The status, its since and its checker are ``expected`` (output and checked_at are the last check's)."""
    found = await status_of(etcd, keys, key)
    return found is not None and (found.status, found.since, found.checker) == expected


# Reported gaps, fixed: a takeover writes the alive document, unreadable orphans go, first results report. ---


async def test_alive_document_is_written_when_a_hub_starts_from_stored_statuses(
    etcd_endpoint: str, key_prefix: str, hub_mode: HubMode
) -> None:
    keys = registry_keys(key_prefix)
    async with HttpHealthServer() as server, EtcdClient([etcd_endpoint]) as etcd:
        key = await register(etcd, keys, "web", server.addr)
        now = datetime.now(UTC)
        # As a leader killed between its status write and its alive write leaves things.
        await etcd.put(keys.status(key), status_to_json(HealthStatus(status="passing", since=now, checked_at=now)))
        async with running_hub(etcd, keys, mode=hub_mode) as runner:
            await eventually(lambda: (m := monitor_of(runner, key)) is not None and m.checked_at, "a check")
            await eventually(lambda: _alive_with(etcd, keys, 1), "the alive document lists the instance", within=3)


async def test_unreadable_stale_status_is_removed_at_hub_start(
    etcd_endpoint: str, key_prefix: str, hub_mode: HubMode
) -> None:
    keys = registry_keys(key_prefix)
    readable, unreadable = InstanceKey("http", "gone", "127.0.0.1:1"), InstanceKey("http", "gone", "127.0.0.1:2")
    async with EtcdClient([etcd_endpoint]) as etcd:
        now = datetime.now(UTC)
        await etcd.put(keys.status(readable), status_to_json(HealthStatus(status="passing", since=now, checked_at=now)))
        await etcd.put(keys.status(unreadable), "{garbage")
        async with running_hub(etcd, keys, mode=hub_mode):
            await eventually(lambda: _missing(etcd, keys.status(readable)), "the readable stale status is removed")
            assert await _missing(etcd, keys.status(unreadable)), "the unreadable stale status is left"


async def test_a_never_passing_instance_has_a_status_saying_why(
    etcd_endpoint: str, key_prefix: str, hub_mode: HubMode
) -> None:
    keys = registry_keys(key_prefix)
    dead = f"127.0.0.1:{free_port()}"
    async with EtcdClient([etcd_endpoint]) as etcd, running_hub(etcd, keys, mode=hub_mode) as runner:
        key = await register(etcd, keys, "web", dead)
        await eventually(lambda: (m := monitor_of(runner, key)) is not None and m.checked_at, "a check")
        status = await wait_status(etcd, keys, key, "critical", within=3)
        assert "connection refused" in status.output


async def test_grpc_channels_outlive_a_term_and_close_with_their_registration(
    etcd_endpoint: str, key_prefix: str, hub_mode: HubMode, etcdctl: EtcdCtl
) -> None:
    keys = registry_keys(key_prefix)
    async with (
        GrpcHealthServer() as server,
        EtcdClient([etcd_endpoint]) as etcd,
        running_hub(etcd, keys, mode=hub_mode) as runner,
    ):
        key = await register(etcd, keys, "api", server.addr, "grpc")
        await wait_status(etcd, keys, key, "passing")
        first_term = active_hub(runner)
        assert len(server.peers) == 1

        # End the term from outside: the hub loses its lease, campaigns again and takes over anew.
        lease = (await leader_keys(etcd, keys))[0].lease
        etcdctl("lease", "revoke", f"{lease:x}")
        await eventually(lambda: runner.hub is not None and runner.hub is not first_term, "a new term")
        calls = server.check_calls
        await eventually(lambda: server.check_calls > calls, "checks in the new term")
        assert len(server.peers) == 1, "the new term reused the channel instead of connecting again"

        await RegistryStore(etcd, keys).delete(key)
        await eventually(lambda: established_connections(server.port) == 0, "the channel closed with its registration")


async def test_oversized_alive_document_is_deleted_not_left_stale(
    etcd_endpoint: str, key_prefix: str, hub_mode: HubMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = registry_keys(key_prefix)
    async with (
        HttpHealthServer() as server,
        EtcdClient([etcd_endpoint]) as etcd,
        running_hub(etcd, keys, mode=hub_mode),
    ):
        first = await register(etcd, keys, "web", server.addr)
        await wait_status(etcd, keys, first, "passing")
        await eventually(lambda: _alive_with(etcd, keys, 1), "the alive document lists the instance")

        monkeypatch.setattr(status_writer, "ALIVE_DOCUMENT_LIMIT", 300)  # about one registration's JSON
        second = await register(etcd, keys, "api", server.addr)
        await wait_status(etcd, keys, second, "passing")
        await eventually(lambda: _missing(etcd, keys.alive), "the oversized alive document is deleted")


async def test_long_lived_objects_are_frozen_while_a_hub_runs(
    etcd_endpoint: str, key_prefix: str, hub_mode: HubMode
) -> None:
    keys = registry_keys(key_prefix)
    gc.unfreeze()
    async with HttpHealthServer() as server, EtcdClient([etcd_endpoint]) as etcd:
        async with running_hub(etcd, keys, freeze_from=2, mode=hub_mode) as runner:
            await register(etcd, keys, "web", server.addr)
            await anyio.sleep(2.5)  # past two intervals
            assert gc.get_freeze_count() == 0, "froze for one instance, under freeze_from"
            await register(etcd, keys, "web", server.addr.replace("127.0.0.1", "localhost"))
            await eventually(lambda: len(active_hub(runner).monitors) == 2, "both instances checked")
            await eventually(lambda: gc.get_freeze_count() > 0, "the hub froze what lives long")
        assert gc.get_freeze_count() == 0, "a stopped hub leaves the collector as it found it"
