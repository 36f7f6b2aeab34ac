"""``kk-etcd-mcp`` under cProfile, for ``bench/kv_latency.py --profile``: ``python bench/profiled.py OUT serve``.

``python -m cProfile`` writes its file when the program returns, and an HTTP server that still has
sessions open ends with ``os._exit`` (see ``app/runner.py``), so the file would never be written. Here
the profile is written just before that exit too. The clock is the main thread's CPU time: the event
loop's work, without the time it waited or the machine's other load.
"""

import cProfile
import os
import runpy
import sys
import time

out = sys.argv.pop(1)
profile = cProfile.Profile(time.thread_time)
_exit = os._exit


def dump_then_exit(code: int) -> None:
    profile.disable()
    profile.dump_stats(out)
    _exit(code)


os._exit = dump_then_exit
sys.argv[0] = "kk-etcd-mcp"
profile.enable()
try:
    runpy.run_module("kk_etcd_mcp", run_name="__main__", alter_sys=True)
finally:
    profile.disable()
    profile.dump_stats(out)
