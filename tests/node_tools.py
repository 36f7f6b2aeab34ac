"""Outside judges from npm for the tests, on a Node.js 22 from npm: the MCP Inspector's CLI (which brings
the official TypeScript SDK's client), oidc-provider, a certified OpenID provider, and the official MCP
conformance suite.

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
OIDC_PROVIDER = "oidc-provider@9.13.3"
CONFORMANCE = "@modelcontextprotocol/conformance@0.1.16"
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


@dataclass(frozen=True)
class NodeModule:
    node: Path
    entry: Path  # the module's main file, for a script to import by path (it lives outside the tests' tree)


_MODULES = NODE_DIR / "node_modules"
_NODE = _MODULES / ".bin" / "node"
_INSPECTOR_CLI = _MODULES / "@modelcontextprotocol" / "inspector" / "clients/launcher/build/index.js"
_OIDC_PROVIDER_ENTRY = _MODULES / "oidc-provider" / "lib" / "index.js"
_CONFORMANCE_CLI = _MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
_TS_CLIENT_ENTRY = _MODULES / "@modelcontextprotocol" / "client" / "dist" / "index.mjs"  # the Inspector's dependency


def _install(installed: Path, what: str) -> str | None:
    """Install every package (and Node) unless ``installed`` exists; why it cannot be had, or None."""
    if _NODE.exists() and installed.is_file():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return f"npm is not installed, so {what} cannot be installed"
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    with (NODE_DIR / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _NODE.exists() and installed.is_file():
            return None
        # Every package at once: npm install --no-save removes what the same command does not name.
        command = [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--no-save"]
        done = subprocess.run(
            [*command, _node_package(), INSPECTOR, OIDC_PROVIDER, CONFORMANCE],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if not (_NODE.exists() and installed.is_file()):
            raise RuntimeError(f"npm could not install {what}:\n{done.stdout}\n{done.stderr}")
    return None


def inspector() -> Inspector | str:
    """The Inspector CLI, installing it first if needed; or why it cannot be had (a reason to skip)."""
    missing = _install(_INSPECTOR_CLI, "the MCP Inspector (an outside client)")
    return missing or Inspector(_NODE, _INSPECTOR_CLI)


def typescript_client() -> NodeModule | str:
    """The official TypeScript SDK's client package (``@modelcontextprotocol/client``, installed with the Inspector)."""
    missing = _install(_TS_CLIENT_ENTRY, "the MCP TypeScript SDK client")
    return missing or NodeModule(_NODE, _TS_CLIENT_ENTRY)


def oidc_provider() -> NodeModule | str:
    """oidc-provider, installing it first if needed; or why it cannot be had (a reason to skip)."""
    missing = _install(_OIDC_PROVIDER_ENTRY, "oidc-provider (a real OpenID provider)")
    return missing or NodeModule(_NODE, _OIDC_PROVIDER_ENTRY)


def conformance() -> NodeModule | str:
    """The official MCP conformance suite's CLI, installing it first if needed; or why it cannot be had."""
    missing = _install(_CONFORMANCE_CLI, "the MCP conformance suite")
    return missing or NodeModule(_NODE, _CONFORMANCE_CLI)


if __name__ == "__main__":
    # Never fails CI by itself: a failed install fails the tests that need it instead, with npm's words.
    try:
        results = [inspector(), oidc_provider(), conformance()]
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"node_tools: {exc}", file=sys.stderr)
        sys.exit(0)
    for result in results:
        if isinstance(result, str):
            print(result)
        elif isinstance(result, Inspector):
            print(f"MCP Inspector CLI: {result.command()}")
        else:
            print(f"{result.entry.parent.parent.name}: {result.entry}")
