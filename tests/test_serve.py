"""``kk-etcd-mcp serve`` as a whole: etcd down at start, the embedded etcd, the etcd command."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import termios
from pathlib import Path

import anyio
import pytest
from etcd_under_test import make_etcd
from mcp_helpers import call, call_error, serve_process, server_env, stdio_client
from polling import HANG_GUARD, eventually

from kk_etcd_mcp.etcd.embedded import accepts_connections, free_port

pytestmark = pytest.mark.anyio


async def _wait_closed(port: int) -> None:
    with anyio.fail_after(HANG_GUARD):
        while accepts_connections("127.0.0.1", port):
            await anyio.sleep(0.1)


async def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    with anyio.fail_after(HANG_GUARD):
        while not accepts_connections("127.0.0.1", port):
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            await anyio.sleep(0.1)


async def test_etcd_down_at_start_then_up_without_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with stdio_client(url) as client:
        text = await call_error(client, "kv_get", key="app/x")
        assert f"etcd unavailable at {url}: connection refused (is etcd running at that address?)" in text

        etcd = make_etcd(tmp_path / "data", port, free_port(), log_file=tmp_path / "etcd.log")
        await etcd.astart()
        try:
            with anyio.fail_after(HANG_GUARD):
                while (await client.call_tool("kv_put", {"key": "app/x", "value": "1"})).is_error:
                    await anyio.sleep(0.2)
            assert (await call(client, "kv_get", key="app/x"))["value"] == "1"
        finally:
            await etcd.astop()


async def test_serve_with_embedded_etcd_starts_uses_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    settings = {
        "embedded_etcd": "true",
        "data_dir": str(tmp_path / "etcd-data"),
        "peer_port": str(free_port()),
    }
    url = f"http://127.0.0.1:{port}"
    async with stdio_client(url, **settings) as client:
        assert accepts_connections("127.0.0.1", port)
        await call(client, "kv_put", key="app/x", value="kept")
    await _wait_closed(port)  # stopped with the server
    assert (tmp_path / "etcd-data" / "member").is_dir()
    assert (tmp_path / "etcd-data.log").is_file()

    async with stdio_client(url, **settings) as client:  # same data dir: the value survived
        assert (await call(client, "kv_get", key="app/x"))["value"] == "kept"
    await _wait_closed(port)


async def test_embedded_etcd_is_not_started_when_etcd_answers(etcd_endpoint: str, key_prefix: str) -> None:
    async with stdio_client(etcd_endpoint, embedded_etcd="true", data_dir="/nonexistent/never-used") as client:
        await call(client, "kv_put", key=f"{key_prefix}x", value="1")
    assert not Path("/nonexistent/never-used").exists()


async def test_etcd_command_runs_in_foreground_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = server_env(f"http://127.0.0.1:{port}")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kk_etcd_mcp",
            "etcd",
            "--data-dir",
            str(tmp_path / "d"),
            "--peer-port",
            str(free_port()),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        await _wait_listening(port, process)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=HANG_GUARD)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert out == b""  # etcd's own output goes to stderr
    assert b"etcd is running at" in err
    await _wait_closed(port)


async def test_stdio_on_a_terminal_and_a_file(tmp_path: Path, etcd_endpoint: str, key_prefix: str) -> None:
    """stdin a terminal and stdout a regular file: the thread and blocking fallbacks of our stdio transport."""
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "kv_get", "arguments": {"key": f"{key_prefix}missing"}},
        },
    ]
    controller, terminal = pty.openpty()
    termios_attrs = termios.tcgetattr(terminal)
    termios_attrs[3] &= ~termios.ECHO  # the terminal must not echo our requests back
    termios.tcsetattr(terminal, termios.TCSANOW, termios_attrs)
    stdout_file = tmp_path / "out.jsonl"
    with stdout_file.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "kk_etcd_mcp", "serve"],
            env=server_env(etcd_endpoint),
            stdin=terminal,
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
    os.close(terminal)
    try:
        os.write(controller, "".join(json.dumps(r) + "\n" for r in requests).encode())
        with anyio.fail_after(HANG_GUARD):
            while stdout_file.read_text().count("\n") < 2:
                await anyio.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=HANG_GUARD)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    replies = {m["id"]: m for m in map(json.loads, stdout_file.read_text().splitlines())}
    assert replies[1]["result"]["serverInfo"]["name"] == "kk-etcd-mcp"
    assert replies[2]["result"]["isError"] is True
    assert f"key not found: {key_prefix}missing" in replies[2]["result"]["content"][0]["text"]


def test_a_busy_http_port_is_one_line_and_exit_code_1(etcd_endpoint: str, tmp_path: Path) -> None:
    """The HTTP port is bound first: taken, it is one line naming who holds it, and nothing else starts."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = server_env(etcd_endpoint, embedded_etcd="true", data_dir=str(tmp_path / "etcd"))
        done = subprocess.run(
            [sys.executable, "-m", "kk_etcd_mcp", "serve", "--transport", "streamable-http", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD * 2,
        )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: address already in use, by pid {os.getpid()}" in lines[0]
    assert "--port" in lines[0] and "serving MCP" not in done.stderr
    assert not (tmp_path / "etcd").exists() and not (tmp_path / "etcd.users").exists()


@pytest.mark.parametrize("etcd_up", [False, True], ids=["etcd down", "etcd up"])
async def test_the_start_says_whether_etcd_answers(etcd_endpoint: str, tmp_path: Path, etcd_up: bool) -> None:
    endpoint = etcd_endpoint if etcd_up else f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "serve.log"
    expected = "connected to etcd 3.5" if etcd_up else f"etcd unavailable at {endpoint}: connection refused"
    with serve_process(server_env(endpoint, hub="false"), log):
        await eventually(lambda: expected in log.read_text(), f"serve logs {expected!r}", within=HANG_GUARD)
    text = log.read_text()
    assert "serving MCP over stdio" in text
    if not etcd_up:
        assert "connected to etcd" not in text
        assert "the server runs anyway, and its tools work as soon as etcd answers" in text
