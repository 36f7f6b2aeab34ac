"""The MCP Apps test host (``tests/apps_host/``): bundled from the console's npm packages, then served
to chromium on the origin of the server under test (Playwright answers its requests; the server never
sees them), so its official TypeScript MCP client reaches ``/mcp`` as a same-origin page would.

``build_host`` needs Node.js and the console's packages (``console/node_modules``: ``.ci/run`` installs
them with ``npm ci``; here they are installed on first use when npm is there). Without them: the reason.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

from playwright.async_api import Page, Route

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "console"
SOURCES = Path(__file__).resolve().parent / "apps_host"
HOST_PATH = "/apps-host/"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


def _console_packages() -> str | None:
    """Install console/node_modules from the lockfile unless it is there; why it cannot be, or None."""
    marker = CONSOLE / "node_modules" / "@modelcontextprotocol" / "ext-apps" / "package.json"
    if marker.is_file():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed, so the console's packages (AppBridge, the MCP client) cannot be installed"
    with (CONSOLE / ".npm-ci.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file():
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=CONSOLE, capture_output=True, text=True, timeout=600
            )
            if done.returncode != 0:
                raise RuntimeError(f"npm ci in console/ failed:\n{done.stdout}\n{done.stderr}")
    return None


def build_host(out: Path) -> Path | str:
    """The bundled host page in ``out`` (index.html, host.js); or why it cannot be built (a reason to skip)."""
    missing = _console_packages()
    if missing:
        return missing
    node = shutil.which("node")
    if node is None:
        return "Node.js is not installed, so the MCP Apps test host cannot be bundled"
    done = subprocess.run(
        [node, str(SOURCES / "build.mjs"), str(CONSOLE), str(out)], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"bundling the test host failed:\n{done.stdout}\n{done.stderr}")
    return out


async def open_host(page: Page, built: Path, server_port: int, token: str) -> None:
    """Open the host page at http://127.0.0.1:<server_port>/apps-host/ (answered from ``built``)."""
    origin = f"http://127.0.0.1:{server_port}"

    async def answer(route: Route) -> None:
        name = route.request.url.split(HOST_PATH, 1)[1].split("?", 1)[0] or "index.html"
        path = built / name
        if path.parent != built or not path.is_file():
            await route.fulfill(status=404, body="not found")
            return
        await route.fulfill(status=200, body=path.read_bytes(), headers={"Content-Type": TYPES[path.suffix]})

    await page.route(f"{origin}{HOST_PATH}**", answer)
    await page.goto(f"{origin}{HOST_PATH}?token={token}")
    await page.wait_for_selector("body[data-ready='true']")
