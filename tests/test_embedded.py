"""EmbeddedEtcd against real etcd processes: no mocks."""

from __future__ import annotations

import json
import os
import socket
import stat
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import EtcdCtl

from kk_etcd_mcp.errors import KkEtcdError
from kk_etcd_mcp.etcd.embedded import (
    EmbeddedEtcd,
    EmbeddedEtcdError,
    default_data_dir,
    etcd_binary,
    free_port,
)

pytestmark = pytest.mark.slow

MakeEtcd = Callable[..., EmbeddedEtcd]


def _health(url: str, timeout: float = 2.0) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{url}/health", timeout=timeout) as resp:
        return str(json.loads(resp.read())["health"])


def _two_ports() -> tuple[int, int]:
    client = free_port()
    peer = free_port()
    while peer == client:
        peer = free_port()
    return client, peer


@pytest.fixture
def make_etcd(tmp_path: Path) -> Iterator[MakeEtcd]:
    """Build EmbeddedEtcd instances on fresh ports in tmp dirs; whatever a test leaves running is stopped."""
    made: list[EmbeddedEtcd] = []

    def make(data_dir: Path | None = None, **kwargs: object) -> EmbeddedEtcd:
        client, peer = _two_ports()
        kwargs.setdefault("client_port", client)
        kwargs.setdefault("peer_port", peer)
        etcd = EmbeddedEtcd(data_dir or tmp_path / f"data{len(made)}", **kwargs)  # type: ignore[arg-type]
        made.append(etcd)
        return etcd

    yield make
    for etcd in made:
        etcd.stop()


def test_binaries_exist() -> None:
    for name in ("etcd", "etcdctl", "etcdutl"):
        assert os.access(etcd_binary(name), os.X_OK)
    with pytest.raises(EmbeddedEtcdError, match="not found"):
        etcd_binary("no-such-binary")


def test_default_data_dir_is_per_user() -> None:
    assert default_data_dir().parts[-2:] == ("kk-etcd-mcp", "etcd")


def test_start_stop_writes_nothing_to_stdout(make_etcd: MakeEtcd, capfd: pytest.CaptureFixture[str]) -> None:
    etcd = make_etcd()  # no log_file: etcd's output is pumped to our stderr
    assert etcd.pid is None
    etcd.start()
    assert etcd.client_url == f"http://127.0.0.1:{etcd.client_port}"
    assert etcd.pid is not None and etcd.running
    assert _health(etcd.client_url) == "true"
    assert stat.S_IMODE(etcd.data_dir.stat().st_mode) == 0o700
    etcd.stop()
    assert etcd.pid is None and not etcd.running
    with pytest.raises(OSError):
        _health(etcd.client_url)

    out, err = capfd.readouterr()
    assert out == ""  # our stdout is the MCP channel
    assert "ready to serve client requests" in err


def test_log_file_receives_output(make_etcd: MakeEtcd, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "logs" / "etcd.log"
    with make_etcd(log_file=log) as etcd:
        assert _health(etcd.client_url) == "true"
    assert "ready to serve client requests" in log.read_text()
    out, err = capfd.readouterr()
    assert out == "" and "ready to serve" not in err


def test_data_survives_restart(make_etcd: MakeEtcd, etcdctl: EtcdCtl, key_prefix: str) -> None:
    etcd = make_etcd()
    etcd.start()
    etcdctl("put", f"{key_prefix}a", "kept", endpoint=etcd.client_url)
    etcd.stop()
    etcd.start()
    got = etcdctl("get", f"{key_prefix}a", "--print-value-only", endpoint=etcd.client_url)
    assert got.stdout.strip() == "kept"


def test_kill_then_start_again(make_etcd: MakeEtcd, etcdctl: EtcdCtl, key_prefix: str) -> None:
    etcd = make_etcd()
    etcd.start()
    etcdctl("put", f"{key_prefix}b", "durable", endpoint=etcd.client_url)
    etcd.kill()
    assert etcd.pid is None
    etcd.kill()  # idempotent too
    etcd.start()
    got = etcdctl("get", f"{key_prefix}b", "--print-value-only", endpoint=etcd.client_url)
    assert got.stdout.strip() == "durable"  # acknowledged writes survive a crash (WAL fsync)


def test_stop_is_idempotent(make_etcd: MakeEtcd) -> None:
    etcd = make_etcd()
    etcd.stop()  # never started
    etcd.start()
    etcd.stop()
    etcd.stop()
    assert etcd.pid is None


def test_start_twice_is_refused(make_etcd: MakeEtcd) -> None:
    etcd = make_etcd()
    etcd.start()
    with pytest.raises(EmbeddedEtcdError, match="already runs"):
        etcd.start()
    assert _health(etcd.client_url) == "true"


@pytest.mark.parametrize("which", ["client_port", "peer_port"])
def test_port_in_use_fails_fast(make_etcd: MakeEtcd, which: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        etcd = make_etcd(**{which: port})
        began = time.monotonic()
        with pytest.raises(EmbeddedEtcdError) as info:
            etcd.start(timeout=30)
    assert time.monotonic() - began < 2
    assert f"port {port} on 127.0.0.1 is already in use" in str(info.value)
    assert which in str(info.value)
    assert isinstance(info.value, KkEtcdError)
    assert etcd.pid is None


@pytest.mark.parametrize("to_file", [False, True], ids=["stderr", "log_file"])
def test_bad_flag_reports_etcds_own_error(make_etcd: MakeEtcd, tmp_path: Path, to_file: bool) -> None:
    log = tmp_path / "bad.log"
    if to_file:
        log.write_text("line from an earlier run\n")
    etcd = make_etcd(extra_args=["--no-such-flag"], log_file=log if to_file else None)
    began = time.monotonic()
    with pytest.raises(EmbeddedEtcdError) as info:
        etcd.start(timeout=30)
    assert time.monotonic() - began < 10
    message = str(info.value)
    # etcd prints this first, then ~20 lines of usage; the summary must not lose it.
    assert "flag provided but not defined: -no-such-flag" in message
    assert "exit code 2" in message
    assert "earlier run" not in message  # only this start's output
    assert etcd.pid is None


def test_fatal_json_log_is_rendered_readably(make_etcd: MakeEtcd) -> None:
    # etcd logs zap JSON; its fatal line carries a Go stack trace that must not drown the cause.
    etcd = make_etcd(extra_args=["--auth-token=bogus"])
    with pytest.raises(EmbeddedEtcdError) as info:
        etcd.start(timeout=30)
    message = str(info.value)
    assert "fatal: discovery failed: auth: invalid auth options" in message
    assert "stacktrace" not in message and "goroutine" not in message


def test_a_data_dir_in_use_fails_at_once_naming_the_etcd(make_etcd: MakeEtcd, tmp_path: Path) -> None:
    # etcd itself would wait for the data dir's lock until the start timeout, then say "db file is flocked".
    first = make_etcd(data_dir=tmp_path / "shared")
    first.start()
    second = make_etcd(data_dir=tmp_path / "shared")
    with pytest.raises(EmbeddedEtcdError) as info:
        second.start(timeout=20)
    assert f"is in use by the etcd with pid {first.pid} at {first.client_url}" in str(info.value)
    assert second.pid is None and _health(first.client_url) == "true"


def test_unusable_data_dir(make_etcd: MakeEtcd, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(EmbeddedEtcdError, match="cannot create the etcd data dir"):
        make_etcd(data_dir=blocker / "data").start()


def test_timeout_kills_the_child(make_etcd: MakeEtcd) -> None:
    # A second, absent member: no quorum, no leader, never healthy.
    client, peer = _two_ports()
    _, absent = _two_ports()
    cluster = f"--initial-cluster=lonely=http://127.0.0.1:{peer},absent=http://127.0.0.1:{absent}"
    etcd = make_etcd(client_port=client, peer_port=peer, name="lonely", extra_args=[cluster])
    with pytest.raises(EmbeddedEtcdError, match=r"did not become healthy .* within 2s; it was killed") as info:
        etcd.start(timeout=2)
    assert "etcd said:" in str(info.value)
    assert etcd.pid is None


def test_shadowing_etcd_env_var_is_ignored(make_etcd: MakeEtcd, monkeypatch: pytest.MonkeyPatch) -> None:
    # etcd 3.5 refuses a flag whose ETCD_* variable is also set; a stray one in the user's shell must not.
    monkeypatch.setenv("ETCD_NAME", "somebody-else")
    monkeypatch.setenv("ETCD_DATA_DIR", "/nonexistent")
    with make_etcd() as etcd:
        assert _health(etcd.client_url) == "true"


def test_pause_and_resume(make_etcd: MakeEtcd) -> None:
    with make_etcd() as etcd:
        etcd.pause()
        with pytest.raises(OSError):
            _health(etcd.client_url, timeout=0.5)
        etcd.resume()
        assert _health(etcd.client_url) == "true"
        etcd.pause()
    assert etcd.pid is None  # stop() also ends a paused etcd
    with pytest.raises(EmbeddedEtcdError, match="not running"):
        etcd.pause()


@pytest.mark.anyio
async def test_astart_astop(make_etcd: MakeEtcd) -> None:
    etcd = make_etcd()
    await etcd.astart()
    assert _health(etcd.client_url) == "true"
    await etcd.astop()
    assert etcd.pid is None


def test_session_fixture(etcd_server: EmbeddedEtcd, etcdctl: EtcdCtl, key_prefix: str) -> None:
    assert _health(etcd_server.client_url) == "true"
    etcdctl("put", f"{key_prefix}k", "v")
    assert etcdctl("get", f"{key_prefix}k", "--print-value-only").stdout.strip() == "v"
