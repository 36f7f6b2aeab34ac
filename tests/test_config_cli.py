"""``kk-etcd-mcp config get|put|watch`` as a real subprocess against real etcd: stdout carries only values,
bad input is one line on stderr and writes nothing; etcdctl confirms what is stored."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import yaml
from conftest import EtcdCtl
from mcp_helpers import server_env
from polling import HANG_GUARD

pytestmark = pytest.mark.anyio


def config_command(endpoint: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "kk_etcd_mcp", "config", *args, "--endpoints", endpoint, "--request-timeout", "2"]


async def run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = server_env("http://127.0.0.1:1")
    del env["KK_ETCD_ENDPOINTS"], env["KK_ETCD_REQUEST_TIMEOUT"]
    done = await anyio.run_process(cmd, input=stdin.encode() if stdin else None, env=env, check=False)
    return subprocess.CompletedProcess(cmd, done.returncode, done.stdout.decode(), done.stderr.decode())


def stored(etcdctl: EtcdCtl, key: str) -> str:
    return etcdctl("get", key, "--print-value-only").stdout.removesuffix("\n")


async def test_put_a_file_then_get_only_the_value(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, tmp_path: Path
) -> None:
    key = f"{key_prefix}db"
    value = "host: db\nport: 5432\n"
    (tmp_path / "db.yaml").write_text(value)
    put = await run(config_command(etcd_endpoint, "put", key, str(tmp_path / "db.yaml")))
    assert put.returncode == 0, put.stderr
    assert put.stdout == "" and f"wrote {key} as yaml at revision" in put.stderr
    assert stored(etcdctl, key) == value

    got = await run(config_command(etcd_endpoint, "get", key))
    assert (got.returncode, got.stdout) == (0, value), got.stderr
    as_json = await run(config_command(etcd_endpoint, "get", key, "--format", "json"))
    assert json.loads(as_json.stdout) == {"host": "db", "port": 5432}

    put = await run(config_command(etcd_endpoint, "put", key, "-", "--format", "json"), stdin='{"port": 1}')
    assert put.returncode == 0, put.stderr
    as_yaml = await run(config_command(etcd_endpoint, "get", key, "--format", "yaml"))
    assert yaml.safe_load(as_yaml.stdout) == {"port": 1}


async def test_bad_input_is_one_line_and_writes_nothing(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, tmp_path: Path
) -> None:
    key = f"{key_prefix}db"
    etcdctl("put", key, "kept")
    cases = [
        (["put", key, "-", "--format", "json"], '{"port": ', "invalid json at line 1"),
        (["put", key, str(tmp_path / "missing.yaml")], None, "cannot read"),
        (["put", key, "-", "--expected-revision", "1"], "new", "revision conflict"),
        (["get", f"{key_prefix}absent"], None, "does not exist"),
    ]
    for args, stdin, message in cases:
        done = await run(config_command(etcd_endpoint, *args), stdin)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 1 and done.stdout == "", (args, done)
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, (args, done.stderr)
    assert stored(etcdctl, key) == "kept"


async def test_watch_prints_each_new_value_and_stops_on_sigint(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, tmp_path: Path
) -> None:
    key = f"{key_prefix}flag"
    etcdctl("put", key, '{"on": true}')
    cmd = config_command(etcd_endpoint, "watch", key, "--format", "json")
    env = server_env(etcd_endpoint)
    with (tmp_path / "stderr").open("wb") as stderr:
        async with await anyio.open_process(cmd, env=env, stderr=stderr) as process:
            try:
                assert process.stdout is not None
                lines = bytearray()

                async def next_line() -> object:
                    with anyio.fail_after(HANG_GUARD):
                        while b"\n" not in lines:
                            lines.extend(await process.stdout.receive())  # type: ignore[union-attr]
                    line, _, rest = bytes(lines).partition(b"\n")
                    lines[:] = rest
                    return json.loads(line)

                assert await next_line() == {"on": True}
                etcdctl("put", key, '{"on": false}')
                assert await next_line() == {"on": False}
                etcdctl("put", key, "plain words")
                assert await next_line() == "plain words"
                process.send_signal(signal.SIGINT)
                with anyio.fail_after(HANG_GUARD):
                    assert await process.wait() == 0
            finally:
                if process.returncode is None:
                    process.kill()
    assert "Traceback" not in (tmp_path / "stderr").read_text()


def test_config_actions_take_no_abbreviated_secret_flags() -> None:
    """``--pass x`` must not be read as ``--password-file x`` (the secret would then show in an error)."""
    from kk_etcd_mcp.cli import build_parser

    parser = build_parser()
    for action in (["get", "k"], ["put", "k", "f"], ["watch", "k"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["config", *action, "--pass", "x"])
        assert parser.parse_args(["config", *action, "--password-file", "p"]).password_file == "p"
