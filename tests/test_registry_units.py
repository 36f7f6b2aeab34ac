"""Pure units of the registry, no I/O: the health state machine, durations, the wire format, keys, names.

The state machine is fed results directly (Consul's ``StatusHandler`` tests); the wire format is read
both as we write it and as kk_etcd_go's SDK writes it (protojson).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kk_etcd_mcp.errors import InvalidArgumentError
from kk_etcd_mcp.registry.durations import format_duration, parse_duration
from kk_etcd_mcp.registry.keys import InstanceKey, RegistryKeys
from kk_etcd_mcp.registry.model import (
    CheckOptions,
    CheckSpec,
    HealthStatus,
    Registration,
    check_addr,
    check_name,
    resolve_check,
)
from kk_etcd_mcp.registry.state import HealthState
from kk_etcd_mcp.registry.wire import (
    InvalidRegistration,
    alive_document,
    alive_entry_json,
    extension_to_json,
    is_kk_etcd_go_document,
    registration_from_documents,
    registration_to_json,
    status_from_json,
    status_to_json,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(second: int) -> datetime:
    return T0 + timedelta(seconds=second)


# HealthState ----------------------------------------------------------------------------------------

P, W, C = "passing", "warning", "critical"


def feed(state: HealthState, results: str) -> list[tuple[str, bool]]:
    """Feed one result per letter (p/w/c) at seconds 0, 1, 2, ...; (status after, changed) per result."""
    letters = {"p": P, "w": W, "c": C}
    seen = []
    for second, letter in enumerate(results):
        changed = state.observe(letters[letter], f"{letter}{second}", at(second))  # type: ignore[arg-type]
        seen.append((state.status, changed))
    return seen


def test_initial_state_is_critical_and_not_checked() -> None:
    state = HealthState()
    assert (state.status, state.since, state.output) == (C, None, "not checked yet")
    assert state.critical_for(at(100)) == 0.0  # since unknown: no time counted yet


@pytest.mark.parametrize(
    ("success_before_passing", "failures_before_critical", "results", "expected"),
    [
        # first good result with success_before_passing=1: passing at once
        (1, 3, "p", [P]),
        (1, 3, "w", [W]),  # warning is routable too
        # a new instance needs success_before_passing consecutive good results
        (2, 3, "pp", [C, P]),
        (3, 3, "ppcppp", [C, C, C, C, C, P]),  # a failure resets the count
        (2, 3, "pw", [C, W]),  # good results of either kind count together
        # a routable instance needs failures_before_critical consecutive failures
        (1, 3, "pccc", [P, P, P, C]),
        (1, 3, "pccpccc", [P, P, P, P, P, P, C]),  # a success resets the failures
        (1, 1, "pc", [P, C]),
        (1, 2, "wcc", [W, W, C]),
        # and back: critical -> passing needs success_before_passing again
        (2, 2, "ppccpp", [C, P, P, C, C, P]),
        # passing <-> warning: no damping, the latest good result says which
        (1, 3, "pwpw", [P, W, P, W]),
        # failures below the threshold neither change the status nor reset it
        (1, 3, "pcc" * 4, [P] * 12),
    ],
)
def test_thresholds(
    success_before_passing: int, failures_before_critical: int, results: str, expected: list[str]
) -> None:
    state = HealthState(success_before_passing, failures_before_critical)
    assert [status for status, _ in feed(state, results)] == expected


def test_observe_reports_exactly_the_transitions_and_since_moves_only_then() -> None:
    state = HealthState(success_before_passing=1, failures_before_critical=2)
    # (Whether a first *critical* result counts as a transition is left open here: see
    # test_a_never_passing_instance_has_a_status_saying_why in test_hub.py.)
    history = feed(state, "ppcccpw")
    assert [changed for _, changed in history] == [True, False, False, True, False, True, True]
    assert state.since == at(6)  # the last transition, not the last check

    state = HealthState(success_before_passing=1, failures_before_critical=2)
    feed(state, "ppp")
    assert state.since == at(0)  # the first transition; later agreeing checks leave it
    state.observe(C, "down", at(3))
    assert (state.status, state.since) == (P, at(0))  # one failure: not a transition
    state.observe(C, "down", at(4))
    assert (state.status, state.since) == (C, at(4))


def test_output_follows_the_results_that_agree_with_the_status() -> None:
    state = HealthState(failures_before_critical=3)
    feed(state, "pp")
    assert state.output == "p1"
    state.observe(C, "connection refused", at(2))
    assert state.output == "p1"  # still passing: a lone failure does not replace the passing output
    state.observe(C, "connection refused", at(3))
    state.observe(C, "timed out", at(4))
    assert (state.status, state.output) == (C, "timed out")
    state.observe(C, "still down", at(5))
    assert state.output == "still down"


def test_critical_for_counts_from_the_transition() -> None:
    state = HealthState(failures_before_critical=1)
    feed(state, "p")
    assert state.critical_for(at(50)) == 0.0  # passing
    state.observe(C, "down", at(10))
    state.observe(C, "down", at(11))
    assert state.critical_for(at(25)) == 15.0
    state.observe(P, "up", at(26))
    assert state.critical_for(at(30)) == 0.0

    never_passed = HealthState()
    never_passed.observe(C, "down", at(5))
    assert never_passed.critical_for(at(8)) == 3.0  # critical since its first check


# Durations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1h2m3.5s", 3723.5),
        ("0.500s", 0.5),  # protojson
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("10ns", 1e-8),
        (" 2s ", 2.0),
        ("5", 5.0),  # a bare number: seconds
        ("2.5", 2.5),
        (7, 7.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "garbage", ["", "  ", "5x", "s", "ms5", "5s5", "five seconds", "1m 30s", "-5s", "nan", "inf", "1e400",
                float("nan"), float("inf"), True, None, [5], {"s": 5}],
)  # fmt: skip
def test_parse_duration_rejects_garbage(garbage: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(garbage)


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (0.5, "0.500s"), (90, "90s"), (1.25, "1.250s"), (0.000001, "0.000001s"),
                          (1e-9, "0.000000001s"), (3600, "3600s")],
)  # fmt: skip
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


# Names and addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a/b", "a b", "a\tb", "a\nb", " ", "/"])
def test_check_name_rejects(name: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        check_name(name)
    assert "service name" in str(err.value)


@pytest.mark.parametrize("name", ["web", "user-svc.v2", "a_b:c", "服务"])
def test_check_name_accepts(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "addr",
    ["", "host", "host:", ":80", "host:0", "host:70000", "host:65536", "host:-1", "host:http", "a b:80",
     "h/x:80", "::1:80", "[::1]", "host:123456", "host:80 "],
)  # fmt: skip
def test_check_addr_rejects(addr: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        check_addr(addr)
    assert "address" in str(err.value)


@pytest.mark.parametrize("addr", ["127.0.0.1:80", "localhost:65535", "[::1]:80", "[fe80::1]:8080", "svc.ns:1"])
def test_check_addr_accepts(addr: str) -> None:
    assert check_addr(addr) == addr


# Check specs ----------------------------------------------------------------------------------------


def test_resolve_check_defaults() -> None:
    http = resolve_check("http", "10.0.0.5:8080", None)
    assert http == CheckSpec(type="http", addr="http://10.0.0.5:8080/KKHealthCheck", timeout=5.0, interval=10.0)
    assert (http.success_before_passing, http.failures_before_critical, http.deregister_critical_after) == (1, 3, None)
    assert resolve_check("http", "h:1", CheckOptions(tls=True)).addr == "https://h:1/KKHealthCheck"
    assert resolve_check("grpc", "h:9000", None).addr == "h:9000"
    assert resolve_check("tcp", "h:22", CheckOptions()).addr == "h:22"
    # a check of another kind than the service: its default target follows the check's kind
    assert resolve_check("http", "h:1", CheckOptions(type="tcp")) == CheckSpec(type="tcp", addr="h:1")
    custom = resolve_check("http", "h:1", CheckOptions(addr="http://h:1/healthz", timeout="2s", interval=3))
    assert (custom.addr, custom.timeout, custom.interval) == ("http://h:1/healthz", 2.0, 3.0)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (CheckOptions(timeout="500ms"), "timeout must be at least 1s"),
        (CheckOptions(timeout="61s", interval="2m"), "timeout must be at most 60s"),
        (CheckOptions(interval="25h"), "interval must be at most 86400s"),
        (CheckOptions(timeout=5, interval=2), "interval (2s) must be at least the timeout (5s)"),
        (CheckOptions(interval=3), "interval (3s) must be at least the timeout (5s)"),  # default timeout
        (CheckOptions(timeout=1, interval=1, deregister_critical_after=0), "deregister_critical_after"),
    ],
)
def test_resolve_check_limits(options: CheckOptions, reason: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        resolve_check("tcp", "h:1", options)
    assert reason in str(err.value)
    assert "h:1" in str(err.value)


# Keys -----------------------------------------------------------------------------------------------


def test_keys_format_and_parse() -> None:
    keys = RegistryKeys("root/kk_service/")
    key = InstanceKey("grpc", "svc", "[::1]:9000")
    assert key.path == "Grpc/svc/[::1]:9000"
    assert keys.registration(key) == "root/kk_service/registration/Grpc/svc/[::1]:9000"
    assert keys.status(key) == "root/kk_service/status/Grpc/svc/[::1]:9000"
    assert keys.alive == "root/kk_service/alive/"
    assert keys.leader == "root/kk_service/hub/leader"
    assert keys.parse(keys.registration(key)) == key
    assert keys.parse(keys.status(key)) == key
    for kind in ("http", "grpc", "tcp"):
        other = InstanceKey(kind, "n", "h:1")  # type: ignore[arg-type]
        assert keys.parse(keys.registration(other)) == other
    assert keys.service_prefix(keys.registrations, "http", "web") == "root/kk_service/registration/Http/web/"
    assert keys.service_prefix(keys.statuses, "tcp", None) == "root/kk_service/status/Tcp/"
    assert keys.service_prefix(keys.statuses, None, "ignored") == "root/kk_service/status/"


@pytest.mark.parametrize(
    "raw",
    [
        "root/kk_service/registration/Udp/svc/h:1",  # unknown type
        "root/kk_service/registration/http/svc/h:1",  # the wire type is capitalised
        "root/kk_service/registration/Http/svc",  # no address
        "root/kk_service/registration/Http/svc/h:1/extra",
        "root/kk_service/registration/Http//h:1",
        "root/kk_service/registration/Http/svc/",
        "root/kk_service/alive/",
        "root/kk_service/hub/leader/694d7a",
        "other/kk_service/registration/Http/svc/h:1",  # another root
        "kk_service/registration/Http/svc/h:1",
    ],
)
def test_keys_parse_rejects(raw: str) -> None:
    assert RegistryKeys("root/kk_service/").parse(raw) is None


# Wire format ----------------------------------------------------------------------------------------

GO_GRPC = {
    "ServiceType": "Grpc",
    "ServiceName": "svc",
    "ServiceAddr": "127.0.0.1:9000",
    "CheckConfig": {"Type": "Grpc", "Timeout": "5s", "Interval": "10s", "Addr": "127.0.0.1:9000"},
}


def raw(document: Any) -> bytes:
    return json.dumps(document).encode()


def read(base: bytes, key: InstanceKey) -> Registration:
    """A registration from kk_etcd_go's key alone."""
    reg = registration_from_documents(key, base, None)
    assert reg is not None
    return reg


def test_kk_etcd_go_registration_parses_with_defaults() -> None:
    key = InstanceKey("grpc", "svc", "127.0.0.1:9000")
    reg = read(raw(GO_GRPC), key)
    assert reg == Registration(
        type="grpc", name="svc", addr="127.0.0.1:9000", check=CheckSpec(type="grpc", addr="127.0.0.1:9000")
    )
    assert (reg.check.timeout, reg.check.interval, reg.check.failures_before_critical) == (5.0, 10.0, 3)
    assert (reg.metadata, reg.weight) == ({}, 1)


@pytest.mark.parametrize(("number", "kind"), [(1, "http"), (2, "grpc")])
def test_kk_etcd_go_enum_numbers(number: int, kind: str) -> None:
    document = {
        "ServiceType": number,
        "ServiceName": "svc",
        "ServiceAddr": "127.0.0.1:9000",
        "CheckConfig": {"Type": number, "Timeout": "2s", "Interval": "3s"},
    }
    key = InstanceKey(kind, "svc", "127.0.0.1:9000")  # type: ignore[arg-type]
    reg = read(raw(document), key)
    assert reg.check.type == kind
    assert (reg.check.timeout, reg.check.interval) == (2.0, 3.0)
    expected_addr = "http://127.0.0.1:9000/KKHealthCheck" if kind == "http" else "127.0.0.1:9000"
    assert reg.check.addr == expected_addr


def test_kk_etcd_go_minimal_documents_take_defaults() -> None:
    key = InstanceKey("http", "web", "h:80")
    for document in ({}, {"CheckConfig": None}, {"CheckConfig": {}}, {"CheckConfig": {"Addr": ""}}):
        reg = read(raw(document), key)
        assert reg.check == CheckSpec(type="http", addr="http://h:80/KKHealthCheck")


def test_the_key_not_the_json_names_the_instance() -> None:
    key = InstanceKey("http", "web", "h:80")
    reg = read(raw(GO_GRPC | {"CheckConfig": {}}), key)
    assert (reg.type, reg.name, reg.addr) == ("http", "web", "h:80")


def test_our_registration_round_trips_through_kk_etcd_go_s_key_and_ours() -> None:
    check = CheckSpec(
        type="grpc", addr="127.0.0.1:9000", timeout=1.5, interval=2, grpc_service="pkg.Svc", tls=True,
        ca_file="/etc/ca.pem", success_before_passing=2, failures_before_critical=4, deregister_critical_after=90,
    )  # fmt: skip
    reg = Registration(
        type="grpc", name="svc", addr="127.0.0.1:9000", check=check, metadata={"zone": "a", "v": "2"}, weight=5
    )
    key = InstanceKey("grpc", "svc", "127.0.0.1:9000")
    theirs, ours = registration_to_json(reg), extension_to_json(reg)
    assert json.loads(theirs) == {
        "ServiceType": "Grpc",
        "ServiceName": "svc",
        "ServiceAddr": "127.0.0.1:9000",
        "CheckConfig": {"Type": "Grpc", "Timeout": "1.500s", "Interval": "2s", "Addr": "127.0.0.1:9000"},
    }
    assert is_kk_etcd_go_document(theirs.encode()) and not is_kk_etcd_go_document(ours.encode())
    assert json.loads(ours)["CheckConfig"]["DeregisterCriticalAfter"] == "90s"
    assert registration_from_documents(key, theirs.encode(), ours.encode()) == reg
    # kk_etcd_go's key alone (it re-registered, or another version wrote it): our fields take defaults.
    assert read(theirs.encode(), key).check == CheckSpec(type="grpc", addr="127.0.0.1:9000", timeout=1.5, interval=2)
    # Ours alone, for an instance kk_etcd_go can have: what kk_etcd_go deregistered.
    assert registration_from_documents(key, None, ours.encode()) is None
    # kk_etcd_go's fields come from its key, whoever wrote it last.
    rewritten = raw(json.loads(theirs) | {"CheckConfig": {"Type": 2, "Timeout": "3s", "Interval": "4s"}})
    joined = registration_from_documents(key, rewritten, ours.encode())
    assert joined is not None and (joined.check.timeout, joined.check.interval, joined.check.tls) == (3, 4, True)

    plain = Registration(type="tcp", name="db", addr="h:5432", check=resolve_check("tcp", "h:5432", None))
    with pytest.raises(ValueError, match="kk_etcd_go cannot read a tcp instance"):
        registration_to_json(plain)
    assert "DeregisterCriticalAfter" not in json.loads(extension_to_json(plain))["CheckConfig"]
    tcp_key = InstanceKey("tcp", "db", "h:5432")
    assert registration_from_documents(tcp_key, None, extension_to_json(plain).encode()) == plain
    assert read(extension_to_json(plain).encode(), tcp_key) == plain  # as older versions stored it


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"Grpc"', "must be a JSON object"),
        (b'{"CheckConfig": 5}', "CheckConfig of the registration must be a JSON object"),
        (raw({"CheckConfig": {"Timeout": "5 seconds"}}), "not a duration: '5 seconds'"),
        (raw({"CheckConfig": {"Timeout": "inf", "Interval": "inf"}}), "not a duration: 'inf'"),
        (raw({"CheckConfig": {"Timeout": "500ms"}}), "timeout must be at least 1s"),
        (raw({"CheckConfig": {"Timeout": "5s", "Interval": "2s"}}), "interval (2s) must be at least the timeout"),
        (raw({"CheckConfig": {"Type": "Udp"}}), "unknown check type 'Udp'"),
        (raw({"CheckConfig": {"Type": 9}}), "unknown check type 9"),
        (raw({"CheckConfig": {"FailuresBeforeCritical": 0}}), "failures_before_critical"),
        (raw({"Weight": "heavy"}), "weight"),
        (raw({"Metadata": ["a"]}), "metadata"),
    ],
)
def test_invalid_registration_says_why(stored: bytes, reason: str) -> None:
    with pytest.raises(InvalidRegistration) as err:
        read(stored, InstanceKey("http", "web", "h:80"))
    assert reason in str(err.value)


def test_status_round_trip_and_unreadable_status() -> None:
    status = HealthStatus(status="passing", output="HTTP 200 OK", since=at(1), checked_at=at(2), checker="hub-1")
    assert status_from_json(status_to_json(status).encode()) == status
    assert status_from_json(b"garbage") is None
    assert status_from_json(b'{"status": "sleeping"}') is None


def test_alive_document_is_kk_etcd_go_shaped_and_stable() -> None:
    def reg(kind: Any, name: str, addr: str) -> Registration:
        return Registration(type=kind, name=name, addr=addr, check=resolve_check(kind, addr, None))

    regs = [reg("http", "web", "h:2"), reg("grpc", "api", "h:9"), reg("http", "web", "h:1")]
    entries = [(InstanceKey(r.type, r.name, r.addr), alive_entry_json(r) or "") for r in regs]
    raw = alive_document(entries)
    document = json.loads(raw)
    assert list(document) == ["Grpc-api", "Http-web"]
    assert [entry["ServiceAddr"] for entry in document["Http-web"]] == ["h:1", "h:2"]
    assert document["Http-web"][0] == {
        "ServiceType": 1,
        "ServiceName": "web",
        "ServiceAddr": "h:1",
        "CheckConfig": {
            "Type": 1,
            "Timeout": {"seconds": 5},
            "Interval": {"seconds": 10},
            "Addr": "http://h:1/KKHealthCheck",
        },
    }
    assert raw == json.dumps(document, separators=(",", ":")), "compact JSON, as kk_etcd_go's json.Marshal writes"
    assert alive_document(list(reversed(entries))) == raw
    assert alive_document([]) == "{}"
    assert alive_entry_json(reg("tcp", "db", "h:5")) is None, "kk_etcd_go has no Tcp type"
