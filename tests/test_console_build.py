"""The web console's shipped files (``kk_etcd_mcp/ui/``) and its views as MCP Apps
(``kk_etcd_mcp/mcp_apps/``): within their size budgets, in the wheel, and exactly what a fresh build of
``console/`` makes (``npm ci`` from the lockfile, then ``npm run build``),
so the committed bundle is the sources' and nothing else. The build needs npm (and the npm registry);
without npm it is skipped, saying so.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from mcp_helpers import repo_root

from kk_etcd_mcp.mcp_server.http.console import CONTENT_TYPES, load_assets

ROOT = repo_root()
UI = ROOT / "kk_etcd_mcp" / "ui"
APPS = ROOT / "kk_etcd_mcp" / "mcp_apps"
APP_BUDGET_GZIPPED = 150 * 1024  # each view: one document, everything inlined
CONSOLE = ROOT / "console"
BUDGET_GZIPPED = 300 * 1024  # every shipped file, gzipped, together
SOURCES = ["package.json", "package-lock.json", "build.mjs", "tsconfig.json", "src", "static"]


def shipped(directory: Path = UI) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in CONTENT_TYPES)


def test_the_shipped_files_fit_the_size_budget() -> None:
    sizes = {p.name: len(gzip.compress(p.read_bytes(), 9)) for p in shipped()}
    assert {"index.html", "console.js", "console.css"} <= set(sizes)
    assert sum(sizes.values()) < BUDGET_GZIPPED, sizes


def test_the_page_loads_only_its_own_files() -> None:
    """No CDN, no inline script or style: everything the page names is a file served beside it."""
    index = (UI / "index.html").read_text()
    assert "<script>" not in index and "style=" not in index and "<style" not in index
    assert "http://" not in index and "https://" not in index and "//" not in index.replace("<!doctype", "")
    served = load_assets(UI)
    for name in ("console.js", "console.css", "icon.svg"):
        assert f'"{name}"' in index and name in served
    bundle = (UI / "console.js").read_text()
    assert "https://cdn" not in bundle and "eval(" not in bundle


def test_each_app_view_is_one_document_within_its_budget() -> None:
    views = {p.name: len(gzip.compress(p.read_bytes(), 9)) for p in shipped(APPS) if p.suffix == ".html"}
    assert set(views) == {"services.html", "history.html", "review.html", "cluster.html"}
    assert all(size < APP_BUDGET_GZIPPED for size in views.values()), views
    for name in views:
        html = (APPS / name).read_text()
        assert "src=" not in html.split("<script>")[0] and "<link" not in html, f"{name} loads a file"
        assert html.count("<script>") == 1 and html.count("</script>") == 1, f"{name}: the script must stay inline"


@pytest.mark.slow
def test_the_wheel_ships_every_console_file(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for path in [*shipped(), *shipped(APPS)]:
            member = f"kk_etcd_mcp/{path.parent.name}/{path.name}"
            assert member in names, f"{path.name} is missing from the wheel: add its pattern to package-data"
            assert archive.read(member) == path.read_bytes()


@pytest.mark.slow
def test_a_fresh_build_reproduces_the_committed_files(tmp_path: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed, so the console cannot be rebuilt here (the committed files are used)")
    work = tmp_path / "console"
    work.mkdir()
    for name in SOURCES:
        source = CONSOLE / name
        if source.is_dir():
            shutil.copytree(source, work / name)
        else:
            shutil.copy2(source, work / name)
    run = {"cwd": work, "capture_output": True, "text": True, "timeout": 600}
    installed = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], **run)  # type: ignore[call-overload]
    assert installed.returncode == 0, f"npm ci failed:\n{installed.stdout}\n{installed.stderr}"
    out, apps_out = tmp_path / "ui", tmp_path / "mcp_apps"
    built = subprocess.run([npm, "run", "build", "--", str(out), str(apps_out)], **run)  # type: ignore[call-overload]
    assert built.returncode == 0, f"the console's build failed:\n{built.stdout}\n{built.stderr}"
    for fresh_dir, committed in ((out, UI), (apps_out, APPS)):
        fresh = sorted(p.name for p in fresh_dir.iterdir())
        assert fresh == [p.name for p in shipped(committed)], f"{committed} holds other files than a build makes"
        for name in fresh:
            assert (fresh_dir / name).read_bytes() == (committed / name).read_bytes(), (
                f"kk_etcd_mcp/{committed.name}/{name} differs from a fresh build: run `cd console && npm ci && "
                "npm run build` and commit the result"
            )
