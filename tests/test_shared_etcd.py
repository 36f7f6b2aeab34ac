"""The embedded etcd's lifetime, with real ``kk-etcd-mcp serve`` processes, real etcd and SIGKILL.

One etcd per data dir, shared by every server that uses it, run by a keeper process: no server loses
it while it runs, it stops a few seconds after its last server is gone (however that server ended),
and a data dir or port that something else holds fails at once, naming it (the old code waited 30 s
for etcd's flock and then said only "db file is flocked"). Waits poll with generous deadlines; nothing
asserts on wall-clock time (HANG_GUARD only fails a test that would hang).
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp_helpers import call, serve_process, server_env, stdio_client
from polling import eventually

from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, accepts_connections, free_ports
from kk_etcd_mcp.etcd.keeper import KeeperFiles, KeeperInfo, live_users, running_keeper

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HANG_GUARD = 60
GONE_WITHIN = 20.0  # the keeper stops etcd GRACE_SECONDS after its last user; generous for a loaded machine


@dataclass
class Etcd:
    """Where one test's embedded etcd lives."""

    data_dir: Path
    port: int
    peer_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, **more: str) -> dict[str, str]:
        return {
            "embedded_etcd": "true",
            "data_dir": str(self.data_dir),
            "peer_port": str(self.peer_port),
            "hub": "false",
            **more,
        }

    def keeper(self) -> KeeperInfo | None:
        return running_keeper(KeeperFiles(self.data_dir))


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    port, peer = free_ports(2)
    where = Etcd(tmp_path / "etcd", port, peer)
    yield where
    keeper = where.keeper()  # a failed test must not leave a keeper and etcd running
    if keeper is not None:
        for pid in (keeper.keeper_pid, keeper.etcd_pid):
            _kill(pid, signal.SIGKILL)


def _kill(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def serve(
    etcd: Etcd, log: Path, *, endpoint: str | None = None, **settings: str
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """``kk-etcd-mcp serve`` over stdio with this test's embedded etcd settings (a context manager)."""
    return serve_process(server_env(endpoint or etcd.url, **etcd.settings(**settings)), log)


async def wait_logged(log: Path, text: str, process: subprocess.Popen[bytes]) -> str:
    async def logged() -> str | None:
        content = log.read_text(errors="replace")
        assert text in content or process.poll() is None, f"serve exited ({process.returncode}):\n{content}"
        return content if text in content else None

    result: str = await eventually(logged, f"serve logs {text!r}", within=HANG_GUARD)
    return result


async def exit_code(process: subprocess.Popen[bytes]) -> int:
    with anyio.fail_after(HANG_GUARD):
        while process.poll() is None:
            await anyio.sleep(0.1)
    return process.returncode


def error_lines(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if " ERROR " in line]


async def test_servers_share_one_etcd_and_the_last_one_out_stops_it(etcd: Etcd, tmp_path: Path) -> None:
    with serve(etcd, tmp_path / "a.log") as first:
        await wait_logged(tmp_path / "a.log", "started the embedded etcd", first)
        keeper = etcd.keeper()
        assert keeper is not None and alive(keeper.etcd_pid) and keeper.client_url == etcd.url

        async with stdio_client(etcd.url, **etcd.settings()) as second:
            assert etcd.keeper() == keeper, "the second server joined the same etcd"
            await call(second, "kv_put", key="app/x", value="1")

            first.send_signal(signal.SIGTERM)  # the first one leaves; the second must keep its etcd
            assert await exit_code(first) == 0
            assert "left the embedded etcd at" in (tmp_path / "a.log").read_text()
            assert alive(keeper.etcd_pid)
            await call(second, "kv_put", key="app/x", value="2")
            assert (await call(second, "kv_get", key="app/x"))["value"] == "2"

    # The last one out stopped it on its way out. The keeper lets go of its lock once etcd is stopped, so
    # its own exit (the interpreter's shutdown) may come a moment after the server's.
    assert not alive(keeper.etcd_pid)
    await eventually(lambda: not alive(keeper.keeper_pid), "the keeper exits once etcd is stopped")
    assert etcd.keeper() is None and not accepts_connections("127.0.0.1", etcd.port)


async def test_a_sigkilled_server_leaves_no_etcd_running(etcd: Etcd, tmp_path: Path) -> None:
    with serve(etcd, tmp_path / "a.log") as server:
        await wait_logged(tmp_path / "a.log", "connected to etcd", server)
        keeper = etcd.keeper()
        assert keeper is not None
        server.kill()

    await eventually(lambda: not alive(keeper.etcd_pid), "etcd stops after its only server was SIGKILLed", GONE_WITHIN)
    await eventually(lambda: not alive(keeper.keeper_pid), "its keeper exits too")
    assert not accepts_connections("127.0.0.1", etcd.port)

    # The next start gets an etcd of its own again, on the same data dir.
    with serve(etcd, tmp_path / "b.log") as again:
        await wait_logged(tmp_path / "b.log", "started the embedded etcd", again)


async def test_a_sigkilled_server_does_not_take_the_etcd_of_another(etcd: Etcd, tmp_path: Path) -> None:
    with serve(etcd, tmp_path / "a.log") as victim:
        await wait_logged(tmp_path / "a.log", "connected to etcd", victim)
        async with stdio_client(etcd.url, **etcd.settings()) as survivor:
            keeper = etcd.keeper()
            assert keeper is not None
            users = KeeperFiles(etcd.data_dir)
            assert len(live_users(users)) == 2
            victim.kill()

            # The keeper has seen the dead server (it removes its file) and keeps etcd for the survivor.
            await eventually(lambda: len(list(users.users.iterdir())) == 1, "the keeper forgets the killed server")
            assert alive(keeper.etcd_pid)
            await call(survivor, "kv_put", key="app/y", value="still here")
            assert etcd.keeper() == keeper
    await eventually(lambda: not alive(keeper.etcd_pid), "etcd stops with the survivor", GONE_WITHIN)


async def test_a_sigkilled_keeper_takes_its_etcd_along(etcd: Etcd, tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("etcd follows its keeper through PR_SET_PDEATHSIG, which only Linux has")
    with serve(etcd, tmp_path / "a.log") as server:
        await wait_logged(tmp_path / "a.log", "connected to etcd", server)
        keeper = etcd.keeper()
        assert keeper is not None
        os.kill(keeper.keeper_pid, signal.SIGKILL)
        await eventually(lambda: not alive(keeper.etcd_pid), "etcd stops when its keeper dies", GONE_WITHIN)


async def test_the_data_dir_in_use_at_another_port_fails_at_once_naming_the_etcd(etcd: Etcd, tmp_path: Path) -> None:
    other_port = free_ports(1)[0]
    with serve(etcd, tmp_path / "a.log") as first:
        await wait_logged(tmp_path / "a.log", "connected to etcd", first)
        keeper = etcd.keeper()
        assert keeper is not None
        with serve(etcd, tmp_path / "b.log", endpoint=f"http://127.0.0.1:{other_port}") as second:
            assert await exit_code(second) == 1
        errors = error_lines(tmp_path / "b.log")
        assert len(errors) == 1, (tmp_path / "b.log").read_text()
        assert f"pid {keeper.etcd_pid}" in errors[0] and etcd.url in errors[0]
        assert f"set endpoints to {etcd.url}" in errors[0]
        assert "Traceback" not in (tmp_path / "b.log").read_text()
        assert first.poll() is None and alive(keeper.etcd_pid), "the refused server did not disturb the first"


async def test_a_data_dir_held_by_an_etcd_no_server_started_fails_at_once(etcd: Etcd, tmp_path: Path) -> None:
    other_port, other_peer = free_ports(2)
    with EmbeddedEtcd(etcd.data_dir, other_port, other_peer, log_file=tmp_path / "orphan.log") as orphan:
        with serve(etcd, tmp_path / "b.log") as server:
            assert await exit_code(server) == 1
        errors = error_lines(tmp_path / "b.log")
        assert len(errors) == 1, (tmp_path / "b.log").read_text()
        assert f"pid {orphan.pid}" in errors[0] and orphan.client_url in errors[0]
        assert "which no kk-etcd-mcp server started" in errors[0]


async def test_the_port_of_another_data_dirs_shared_etcd_is_refused(etcd: Etcd, tmp_path: Path) -> None:
    with serve(etcd, tmp_path / "a.log") as first:
        await wait_logged(tmp_path / "a.log", "connected to etcd", first)
        elsewhere = tmp_path / "elsewhere"
        with serve(etcd, tmp_path / "b.log", data_dir=str(elsewhere)) as second:
            assert await exit_code(second) == 1
        errors = error_lines(tmp_path / "b.log")
        assert len(errors) == 1 and f"set data_dir to {etcd.data_dir}" in errors[0], errors


async def test_a_port_taken_by_something_else_is_named_not_called_etcd(etcd: Etcd, tmp_path: Path) -> None:
    """Not etcd on the endpoint: say so (and who it is) instead of "etcd already answers"."""
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{web.server_address[1]}"
        with serve(etcd, tmp_path / "b.log", endpoint=endpoint) as server:
            assert await exit_code(server) == 1
    finally:
        web.shutdown()
        web.server_close()
    errors = error_lines(tmp_path / "b.log")
    assert len(errors) == 1, (tmp_path / "b.log").read_text()
    assert f"something that is not etcd listens on {endpoint}" in errors[0]
    assert f"pid {os.getpid()}" in errors[0]  # this test process runs that web server
    assert "already answers" not in (tmp_path / "b.log").read_text()
    assert not etcd.data_dir.parent.joinpath("etcd.users").exists(), "nothing was set up for an etcd"


async def test_an_etcd_already_there_is_used_and_said_to_be_left_alone(
    etcd: Etcd, etcd_endpoint: str, tmp_path: Path
) -> None:
    with serve(etcd, tmp_path / "a.log", endpoint=etcd_endpoint) as server:
        logged = await wait_logged(tmp_path / "a.log", "connected to etcd", server)
    assert f"etcd 3.5.1 already answers at {etcd_endpoint}" in logged
    assert "this server did not start it and will not stop it" in logged
    assert not etcd.data_dir.exists()
