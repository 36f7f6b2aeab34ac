"""``kk-etcd-mcp services``: the table of instances, its filters, its failure mode and ``--watch``.

The command runs as a real subprocess; registrations are written with etcdctl (as kk_etcd_go or our
tools would write them) and a hub runs in the test's event loop to keep statuses.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, TypeVar

import anyio
import pytest
from anyio.abc import ByteReceiveStream, Process
from conftest import EtcdCtl
from health_servers import HttpHealthServer
from mcp_helpers import server_env
from polling import eventually
from registry_helpers import hub_at
from tcp_proxy import tcp_proxy

from kk_etcd_mcp.etcd import EmbeddedEtcd, EtcdClient
from kk_etcd_mcp.etcd.embedded import free_port

pytestmark = pytest.mark.anyio

T = TypeVar("T")

HEADER = ["TYPE", "NAME", "ADDR", "STATUS", "SINCE", "CHECKED_BY", "OUTPUT"]


def command(etcd_endpoint: str, root: str, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "kk_etcd_mcp", "services",
        "--endpoints", etcd_endpoint, "--registry-prefix", root, *args,
    ]  # fmt: skip


def env() -> dict[str, str]:
    """No KK_ETCD_* from the caller's environment: the flags say everything."""
    environment = server_env("http://127.0.0.1:1")
    del environment["KK_ETCD_ENDPOINTS"], environment["KK_ETCD_REQUEST_TIMEOUT"]
    return environment


async def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    result = await anyio.run_process(cmd, env=env(), check=False)
    return subprocess.CompletedProcess(cmd, result.returncode, result.stdout.decode(), result.stderr.decode())


def register(etcdctl: EtcdCtl, root: str, wire_type: str, name: str, addr: str, *, check_addr: str = "") -> None:
    """A registration with a 1 s check: as kk_etcd_go writes it, or for Tcp (which it lacks) as we do."""
    config = {"Type": wire_type, "Timeout": "1s", "Interval": "1s", "Addr": check_addr or addr}
    document = {"ServiceType": wire_type, "ServiceName": name, "ServiceAddr": addr, "CheckConfig": config}
    section = "registration_ext" if wire_type == "Tcp" else "registration"
    etcdctl("put", f"{root}{section}/{wire_type}/{name}/{addr}", json.dumps(document))


def rows(stdout: str) -> tuple[list[str], dict[tuple[str, str], list[str]], str]:
    """(header cells, {(name, addr): row cells}, summary line) of one printed table.

    Cells are cut at the header's column positions (SINCE reads "3s ago": it holds a space).
    """
    lines = stdout.rstrip("\n").splitlines()
    assert len(lines) >= 2, stdout
    header, *body, summary = lines
    starts = [header.index(title) for title in HEADER]
    table = {}
    for line in body:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        table[cells[1], cells[2]] = cells
    return header.split(), table, summary


async def test_services_prints_a_table_of_instances_with_status_and_hub(
    etcd_endpoint: str, root: str, etcdctl: EtcdCtl
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with HttpHealthServer() as web, hub_at(etcd_endpoint, root) as hub:
        web.body = "all good\nreally"
        register(etcdctl, root, "Http", "web", web.addr, check_addr=web.check_url)
        register(etcdctl, root, "Http", "web", dead, check_addr=f"http://{dead}/KKHealthCheck")
        register(etcdctl, root, "Tcp", "db", web.addr)

        async def settled() -> bool:
            monitors = hub.hub.monitors.values() if hub.hub else []
            statuses = {(m.key.name, m.key.addr): m.state.status for m in monitors if m.checked_at}
            return statuses == {("web", web.addr): "passing", ("web", dead): "critical", ("db", web.addr): "passing"}

        await eventually(settled, "the hub has checked all three instances")

        async def table_settled() -> subprocess.CompletedProcess[str] | None:
            done = await run(command(etcd_endpoint, root))
            assert done.returncode == 0, done.stderr
            shown = {key: cells[3] for key, cells in rows(done.stdout)[1].items()}
            expected = {("web", web.addr): "passing", ("web", dead): "critical", ("db", web.addr): "passing"}
            return done if shown == expected else None

        # the statuses reach etcd through the hub's writer, a moment after the checks
        done = await eventually(table_settled, "the printed table shows the statuses")
        header, table, summary = rows(done.stdout)
        assert header == HEADER
        lines = done.stdout.splitlines()
        assert lines[1].split()[:4] == ["tcp", "db", web.addr, "passing"], "rows are sorted by name"
        assert lines[0].index("STATUS") == lines[1].index("passing"), "columns are aligned"
        up = table["web", web.addr]
        assert up[:4] == ["http", "web", web.addr, "passing"]
        assert up[4].endswith("ago")
        assert up[5] == hub.hub_id, "the hub that checks it"
        assert "200" in up[6] and "all good really" in up[6], "the output is shown on one line"
        assert table["web", dead][:4] == ["http", "web", dead, "critical"]
        assert summary == f"3 instance(s); checked by hub {hub.hub_id}"

        only_web = await run(command(etcd_endpoint, root, "--name", "web"))
        assert only_web.returncode == 0, only_web.stderr
        header, table, summary = rows(only_web.stdout)
        assert header == HEADER
        assert set(table) == {("web", web.addr), ("web", dead)}
        assert summary.startswith("2 instance(s); ")

        only_tcp = await run(command(etcd_endpoint, root, "--type", "tcp"))
        assert set(rows(only_tcp.stdout)[1]) == {("db", web.addr)}

        bad_name = await run(command(etcd_endpoint, root, "--name", "a/b"))
        assert bad_name.returncode == 1
        assert bad_name.stdout == ""
        assert "must not contain '/'" in bad_name.stderr
        assert "Traceback" not in bad_name.stderr

    # no hub any more: the table says so
    no_hub = await run(command(etcd_endpoint, root, "--name", "db"))
    assert rows(no_hub.stdout)[2] == "1 instance(s); no hub is running: statuses are not being updated"


async def test_services_with_etcd_unreachable_fails_with_one_line(root: str) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    done = await run(command(unreachable, root, "--request-timeout", "1"))
    assert done.returncode == 1
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "unavailable" in lines[0] and f"{unreachable}" in lines[0]


def last_table(printed: str) -> str:
    """The latest table ``--watch`` printed: each redraw comes after a blank line."""
    return printed.strip("\n").split("\n\n")[-1]


async def read_until(process: Process, buffer: bytearray, needle: str, within: float = 15.0) -> str:
    """Read stdout into ``buffer`` until ``needle`` appears; returns everything read so far."""
    stream: ByteReceiveStream | None = process.stdout
    assert stream is not None
    with anyio.move_on_after(within):
        while needle.encode() not in buffer:
            buffer.extend(await stream.receive())
        return buffer.decode()
    raise AssertionError(f"{needle!r} not printed within {within}s; printed so far:\n{buffer.decode()}")


async def test_services_watch_prints_again_on_change_and_stops_on_sigint(
    etcd_endpoint: str, root: str, etcdctl: EtcdCtl, tmp_path: Path
) -> None:
    register(etcdctl, root, "Tcp", "first", "127.0.0.1:7101")
    with (tmp_path / "stderr").open("wb") as stderr:
        await watch_session(etcd_endpoint, root, etcdctl, stderr)
    assert "Traceback" not in (tmp_path / "stderr").read_text()


async def watch_session(etcd_endpoint: str, root: str, etcdctl: EtcdCtl, stderr: IO[bytes]) -> None:
    async with await anyio.open_process(command(etcd_endpoint, root, "--watch"), env=env(), stderr=stderr) as process:
        try:
            buffer = bytearray()
            first = await read_until(process, buffer, "instance(s)")
            assert "127.0.0.1:7101" in first and "127.0.0.1:7102" not in first
            assert first.startswith("TYPE")

            register(etcdctl, root, "Tcp", "second", "127.0.0.1:7102")
            printed = await read_until(process, buffer, "2 instance(s)")
            assert printed.count("TYPE  ") >= 2, printed
            header, table, summary = rows(last_table(printed))
            assert header == HEADER
            assert set(table) == {("first", "127.0.0.1:7101"), ("second", "127.0.0.1:7102")}
            assert table["second", "127.0.0.1:7102"][:4] == ["tcp", "second", "127.0.0.1:7102", "critical"]
            assert summary.startswith("2 instance(s); no hub is running")

            del buffer[:]
            etcdctl("del", f"{root}registration_ext/Tcp/first/127.0.0.1:7101")
            printed = await read_until(process, buffer, "1 instance(s)")
            assert set(rows(last_table(printed))[1]) == {("second", "127.0.0.1:7102")}

            process.send_signal(signal.SIGINT)
            with anyio.fail_after(15):
                code = await process.wait()
            assert code == 0
        finally:
            if process.returncode is None:
                process.kill()


async def test_services_watch_lists_again_after_a_compaction(
    own_etcd: EmbeddedEtcd, etcdctl: EtcdCtl, tmp_path: Path
) -> None:
    """Cut off from etcd while a change lands and etcd compacts it away: the watch cannot resume, so the
    command lists again and prints the table with the change, instead of failing or missing it."""
    root = "kk_service/"

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return etcdctl(*args, endpoint=own_etcd.client_url)

    register(ctl, root, "Tcp", "first", "127.0.0.1:7101")
    async with tcp_proxy("127.0.0.1", own_etcd.client_port) as proxy, EtcdClient([own_etcd.client_url]) as etcd:
        with (tmp_path / "stderr").open("wb") as stderr:
            watch = command(proxy.url, root, "--watch")
            async with await anyio.open_process(watch, env=env(), stderr=stderr) as process:
                try:
                    buffer = bytearray()
                    await read_until(process, buffer, "1 instance(s)")
                    proxy.cut()
                    register(ctl, root, "Tcp", "second", "127.0.0.1:7102")
                    later = await etcd.put("elsewhere", "x")  # etcd keeps the revision it compacts at: go past it
                    await etcd.compact(later.revision)
                    del buffer[:]
                    proxy.restore()
                    printed = await read_until(process, buffer, "2 instance(s)")
                    assert set(rows(last_table(printed))[1]) == {
                        ("first", "127.0.0.1:7101"),
                        ("second", "127.0.0.1:7102"),
                    }
                    process.send_signal(signal.SIGINT)
                    with anyio.fail_after(15):
                        assert await process.wait() == 0
                finally:
                    if process.returncode is None:
                        process.kill()
    logged = (tmp_path / "stderr").read_text()
    assert "compacted" in logged and f"listing {root} again" in logged, logged
    assert "Traceback" not in logged
