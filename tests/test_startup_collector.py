"""``kk-etcd-mcp serve`` pauses the garbage collector while it starts, then serves with it running again,
what the start-up made frozen (so that collections never walk it again). A server run inside another
program (as these tests do elsewhere) leaves that program's collector alone.
"""

import gc
import json
import socket
import subprocess
import sys

from kk_etcd_mcp.app.runner import resume_collector

# Serves stdio for no time: reports the collector's state at the moment serving would begin.
SERVE_AND_REPORT = """
import gc, json, sys
import kk_etcd_mcp.app.runner as runner
from kk_etcd_mcp.cli import main

async def report(server):
    print(json.dumps({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))

runner.run_stdio = report
sys.exit(main(["serve", "--endpoints", sys.argv[1], "--no-hub", "--transport", "stdio"]))
"""


def test_serve_runs_the_collector_again_once_started_with_the_start_up_frozen(etcd_endpoint: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVE_AND_REPORT, etcd_endpoint], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout.splitlines()[-1])
    assert state["enabled"], "the collector must run while serving"
    assert state["frozen"] > 10_000, "the start-up's objects (modules, schemas, tools) are frozen"


# A start that fails (here: its HTTP port is taken) leaves the collector running for the caller of main().
FAIL_TO_START_AND_REPORT = """
import gc, json, sys
from kk_etcd_mcp.cli import main

code = main(["serve", "--endpoints", sys.argv[1], "--transport", "streamable-http", "--port", sys.argv[2]])
print(json.dumps({"code": code, "enabled": gc.isenabled()}))
"""


def test_a_failed_start_leaves_the_collector_running(etcd_endpoint: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        done = subprocess.run(
            [sys.executable, "-c", FAIL_TO_START_AND_REPORT, etcd_endpoint, port],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in done.stderr, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"code": 1, "enabled": True}


def test_a_server_run_inside_another_program_leaves_its_collector_alone() -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    resume_collector()
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen
