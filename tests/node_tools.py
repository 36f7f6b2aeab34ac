"""Outside MCP clients from npm for the tests: the MCP Inspector's CLI, on a Node.js 22 from npm.

Installed once into ``.node-tools/`` at the repository root (or ``KK_TEST_NODE_DIR``); ``.ci/run`` runs
this module to install them before the tests, and a test that needs them installs them on first use
(under a file lock: xdist workers may ask at once). Without npm the tests that need them are skipped.

    python tests/node_tools.py      # install now
"""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"  # needs Node.js >= 22.19
NODE_MAJOR = 22
_ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = Path(os.environ.get("KK_TEST_NODE_DIR", _ROOT / ".node-tools"))


@dataclass(frozen=True)
class Inspector:
    node: Path
    cli: Path  # the launcher script; run as: node <cli> --cli <target> --method ...

    def command(self, *args: str) -> list[str]:
        return [str(self.node), str(self.cli), "--cli", *args]


def _node_package() -> str:
    system = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system(), platform.system().lower())
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    return f"node-{system}-{machine}@{NODE_MAJOR}"


def _installed() -> Inspector | None:
    node = NODE_DIR / "node_modules" / ".bin" / "node"
    cli = NODE_DIR / "node_modules" / "@modelcontextprotocol" / "inspector" / "clients/launcher/build/index.js"
    return Inspector(node, cli) if node.exists() and cli.is_file() else None


def inspector() -> Inspector | str:
    """The Inspector CLI, installing it first if needed; or why it cannot be had (a reason to skip)."""
    found = _installed()
    if found is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed, so the MCP Inspector (an outside client) cannot be installed"
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    with (NODE_DIR / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _installed()
        if found is not None:
            return found
        command = [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--no-save"]
        done = subprocess.run(
            [*command, _node_package(), INSPECTOR], capture_output=True, text=True, timeout=600, check=False
        )
        found = _installed()
        if found is None:
            raise RuntimeError(f"npm could not install the MCP Inspector:\n{done.stdout}\n{done.stderr}")
        return found


if __name__ == "__main__":
    # Never fails CI by itself: a failed install fails tests/test_inspector.py instead, with npm's words.
    try:
        result = inspector()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"node_tools: {exc}", file=sys.stderr)
        sys.exit(0)
    print(result if isinstance(result, str) else f"MCP Inspector CLI: {result.command()}")
