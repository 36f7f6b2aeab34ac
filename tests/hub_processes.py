"""``kk-etcd-mcp hub`` processes for tests: started with settings, logging to files, reaped at the end."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx2
from mcp_helpers import server_env, stop_process
from prometheus_client.parser import text_string_to_metric_families

from kk_etcd_mcp.etcd.embedded import free_port


@dataclass
class HubProcess:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    async def metrics(self) -> dict[str, float]:
        """Its /metrics, parsed by prometheus-client (``metric_samples``)."""
        async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
            response = await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        assert response.status_code == 200, response.text
        return metric_samples(response.text)


def metric_samples(text: str) -> dict[str, float]:
    """Exposition text, parsed by prometheus-client: sample name with sorted labels -> value, e.g.
    ``kk_etcd_mcp_checks_total{result=passing,type=http}``."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


class HubProcesses:
    """Start hubs on one registry root; each logs to ``<logs>/hub-<n>.log`` and serves metrics on a free port."""

    def __init__(self, stack: ExitStack, endpoint: str, root: str, logs: Path, settings: dict[str, str]) -> None:
        self._stack = stack
        self._env = server_env(endpoint, registry_prefix=root, log_level="INFO", **settings)
        self._logs = logs
        self.started: list[HubProcess] = []

    def start(self, **settings: str) -> HubProcess:
        path = self._logs / f"hub-{len(self.started)}.log"
        log: IO[bytes] = self._stack.enter_context(path.open("wb"))
        port = free_port("127.0.0.1")
        env = self._env | {f"KK_ETCD_{name.upper()}": value for name, value in settings.items()}
        command = [sys.executable, "-m", "kk_etcd_mcp", "hub", "--metrics-port", str(port)]
        process = subprocess.Popen(command, env=env, stderr=log)
        self._stack.callback(_reap, process)
        hub = HubProcess(process, path, port)
        self.started.append(hub)
        return hub

    def logs(self) -> str:
        """Each hub's log for a failure: every line but the routine check results, then its last lines."""
        return "\n".join(f"--- {h.log.name}\n{_unusual(h.log_text())}" for h in self.started)


_ROUTINE = (" is passing: ", " is critical: ", " is warning: ")


def _unusual(text: str) -> str:
    lines = text.splitlines()
    unusual = [line for line in lines if not any(word in line for word in _ROUTINE)]
    return "\n".join([*unusual[-40:], "(last lines)", *lines[-5:]])


@contextmanager
def hub_processes(endpoint: str, root: str, count: int, logs: Path, **settings: str) -> Iterator[HubProcesses]:
    """``count`` hubs started (more with ``start()``); each is stopped with SIGTERM at the end if still running."""
    with ExitStack() as stack:
        hubs = HubProcesses(stack, endpoint, root, logs, settings)
        for _ in range(count):
            hubs.start()
        yield hubs


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        stop_process(process)
