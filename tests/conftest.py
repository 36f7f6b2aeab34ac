"""Shared fixtures: one real etcd per test session, a unique key prefix per test, and etcdctl.

Async tests use the anyio pytest plugin (``@pytest.mark.anyio``) on the asyncio backend, which grpc.aio needs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol
from uuid import uuid4

import pytest
from etcd_under_test import binary, make_etcd
from recovery import RECOVERY, Recorder

from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_ports


class EtcdCtl(Protocol):
    def __call__(self, *args: str, endpoint: str | None = None) -> subprocess.CompletedProcess[str]: ...


def _make_etcdctl(default_endpoint: str) -> EtcdCtl:
    etcdctl_path = str(binary("etcdctl"))
    # Drop the caller's ETCDCTL_* settings: a test talks to the endpoint it names, as nobody in particular.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")} | {"ETCDCTL_API": "3"}

    def etcdctl(*args: str, endpoint: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [etcdctl_path, f"--endpoints={endpoint or default_endpoint}", *args]
        try:
            return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=30)
        except subprocess.CalledProcessError as exc:
            exc.add_note(f"etcdctl stderr: {exc.stderr.strip()}")  # CalledProcessError hides it otherwise
            raise

    return etcdctl


def keys_under(etcdctl: EtcdCtl, prefix: str) -> list[str]:
    """The keys under ``prefix``, as etcdctl lists them (independently of our code)."""
    return [line for line in etcdctl("get", prefix, "--prefix", "--keys-only").stdout.splitlines() if line]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
async def one_event_loop_per_session(anyio_backend: str) -> AsyncIterator[None]:
    """Hold anyio's test runner for the whole session, so every async test runs on one event loop.

    grpc.aio delivers a call's completion events to the loop the call started on; with a loop per test,
    a late event of one test's cancelled call could land on a loop that is already closed.
    """
    yield


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEtcd]:
    base = tmp_path_factory.mktemp("etcd")
    client_port, peer_port = free_ports(2)
    # A log file rather than stderr: output from a session-wide etcd would land in whichever test is running.
    server = make_etcd(base / "data", client_port, peer_port, log_file=base / "etcd.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def etcd_endpoint(etcd_server: EmbeddedEtcd) -> str:
    return etcd_server.client_url


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EmbeddedEtcd]:
    """An etcd of this test alone, for tests that stop, freeze, compact or reconfigure it."""
    server = make_etcd(tmp_path / "data", *free_ports(2), log_file=tmp_path / "etcd.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def key_prefix() -> str:
    """A prefix no other test uses, so tests share one etcd without seeing each other's keys."""
    return f"t/{uuid4().hex[:12]}/"


@pytest.fixture
def root(key_prefix: str) -> str:
    """This test's registry root: a hub started with it campaigns at <root>hub/leader and sees only its instances."""
    return f"{key_prefix}kk_service/"


@pytest.fixture(scope="session")
def etcdctl(etcd_endpoint: str) -> EtcdCtl:
    """Run etcdctl against the session etcd (or ``endpoint=``) to check writes independently of our code."""
    return _make_etcdctl(etcd_endpoint)


@pytest.fixture
def recovery(request: pytest.FixtureRequest) -> Recorder:
    """``recovery(what, seconds)``: note a measured recovery time (or another figure, with ``unit``) for
    the table printed at the end of the run. Kept in the test's report, so it crosses from xdist workers."""

    def record(what: str, value: float, unit: str = "s") -> None:
        request.node.user_properties.append((RECOVERY, (what, value, unit)))

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [
        f"{value:7.2f} {unit:<3}  {what}  [{report.nodeid.split('::')[-1]}]"
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, (what, value, unit) in getattr(report, "user_properties", [])
        if name == RECOVERY
    ]
    if lines:
        terminalreporter.section("fault recovery times (measured, not asserted)")
        for line in lines:
            terminalreporter.write_line(line)
