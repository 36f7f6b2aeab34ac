"""``app/signals.py``: the one SIGINT/SIGTERM handler of the long-running commands.

The commands themselves are stopped by signals in their own tests (serve: tests/faults/test_graceful_stop.py,
etcd: test_serve.py, services --watch: test_services_cli.py); here, the helper's promises, in-process.
"""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from polling import HANG_GUARD

from kk_etcd_mcp.app.signals import run_until_signal
from kk_etcd_mcp.errors import KkEtcdError

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_cancels_the_block_and_its_tasks(signum: signal.Signals) -> None:
    cleaned_up, task_cancelled = anyio.Event(), anyio.Event()

    async def background() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            task_cancelled.set()

    with anyio.fail_after(HANG_GUARD):
        async with run_until_signal() as running:
            running.tasks.start_soon(background)
            try:
                os.kill(os.getpid(), signum)
                await anyio.sleep_forever()
            finally:
                cleaned_up.set()
    assert cleaned_up.is_set() and task_cancelled.is_set()


async def test_a_signal_calls_the_stop_the_block_chose() -> None:
    stopped, ended_by_itself = anyio.Event(), False
    with anyio.fail_after(HANG_GUARD):
        async with run_until_signal() as running:
            running.on_signal = stopped.set  # e.g. uvicorn's graceful stop: the block ends by itself
            os.kill(os.getpid(), signal.SIGTERM)
            await stopped.wait()
            await anyio.lowlevel.checkpoint()  # a cancelled block would stop here
            ended_by_itself = True
    assert ended_by_itself


async def test_the_blocks_own_error_comes_out_as_itself() -> None:
    with pytest.raises(KkEtcdError, match=r"^etcd said no$"):
        async with run_until_signal():
            raise KkEtcdError("etcd said no")


def test_the_etcd_command_reports_a_start_up_failure_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "kk_etcd_mcp", "etcd", "--client-port", str(port), "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port} on 127.0.0.1 is already in use" in lines[0], result.stderr
