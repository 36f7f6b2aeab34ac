"""The import layers, read from every module's syntax tree (imports inside functions count too).

    app/ (with cli.py, __main__.py)   the application: composition root, signals, CLI views; imports anything
    mcp_server/ ui/ mcp_apps/         the MCP surface and the views' built files: import the core packages,
                                      never the application
    config_center/ registry/ access/  the core packages: know nothing of MCP or of the application
      cluster/ audit/
    etcd/                             the bottom: imports none of the packages above

Beside them, modules every layer may use (settings, errors, logs, holders, change, ranges, metrics, backoff,
grpc_await, lazy, h2grpc) import no layer above etcd/ (settings builds the etcd client).

The package root's ``__init__`` is the SDK's curated API: it may import the core packages, not the MCP
surface or the application. Importing the root itself (``kk_etcd_mcp``, its ``__version__``) crosses no
layer: Python imports it before any of its modules anyway.
"""

import ast
from pathlib import Path

import pytest

import kk_etcd_mcp

PACKAGE = Path(kk_etcd_mcp.__file__).parent
APPLICATION = {"app", "cli", "__main__"}
MCP = {"mcp_server", "ui", "mcp_apps"}  # the web console's and the MCP Apps' built files
CORE = {"config_center", "registry", "access", "cluster", "audit"}
SHARED = {
    "settings",
    "errors",
    "logs",
    "holders",
    "change",
    "ranges",
    "metrics",
    "backoff",
    "grpc_await",
    "lazy",
    "h2grpc",
}  # modules every layer may use

# layer -> the parts of kk_etcd_mcp it must not import
FORBIDDEN = {
    "application": set(),
    "public API": APPLICATION | MCP,
    "mcp_server": APPLICATION,
    "core": APPLICATION | MCP,
    "shared": APPLICATION | MCP | CORE,
    "etcd": APPLICATION | MCP | CORE,
}
# Libraries a layer must not import: core code never raises MCP errors or builds MCP types.
NOT_MCP = {"mcp", "mcp_types"}
FORBIDDEN_LIBRARIES = {"public API": NOT_MCP, "core": NOT_MCP, "shared": NOT_MCP, "etcd": NOT_MCP}


def part_of(module: str) -> str:
    """The first name below kk_etcd_mcp (``registry`` for kk_etcd_mcp.registry.hub); '' for the root."""
    names = module.split(".")
    return names[1] if len(names) > 1 else ""


def layer_of(part: str) -> str:
    if not part:
        return "public API"
    if part in APPLICATION:
        return "application"
    if part in MCP:
        return "mcp_server"
    if part in CORE:
        return "core"
    if part in SHARED:
        return "shared"
    if part == "etcd":
        return "etcd"
    raise AssertionError(f"kk_etcd_mcp.{part} is in no layer: add it to tests/test_layers.py")


def module_name(path: Path, package: Path = PACKAGE) -> str:
    relative = path.relative_to(package.parent).with_suffix("")
    names = list(relative.parts)
    return ".".join(names[:-1] if names[-1] == "__init__" else names)


def imported(path: Path, root: Path = PACKAGE) -> set[str]:
    """Every module ``path`` imports, absolute (``from ..etcd import x`` -> kk_etcd_mcp.etcd)."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            if source == "kk_etcd_mcp":  # from .. import registry: the names are the modules
                found.update(f"{source}.{alias.name}" for alias in node.names)
            else:
                found.add(source)
    return found


def modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def violations(path: Path, root: Path = PACKAGE) -> list[str]:
    layer = layer_of(part_of(module_name(path, root)))
    wrong = []
    for target in sorted(imported(path, root)):
        top = target.split(".")[0]
        if top == "kk_etcd_mcp":
            part = part_of(target)
            if part and part != "__version__" and part in FORBIDDEN[layer]:
                wrong.append(target)
        elif top in FORBIDDEN_LIBRARIES.get(layer, set()):
            wrong.append(target)
    return [f"{module_name(path, root)} ({layer}) imports {target}" for target in wrong]


def test_every_module_keeps_to_its_layer() -> None:
    found = [problem for path in modules() for problem in violations(path)]
    assert found == []


def test_the_application_layer_is_on_top() -> None:
    """The composition root and the CLI views live in app/; nothing below imports them."""
    app = {module_name(path) for path in modules() if part_of(module_name(path)) == "app"}
    assert {"kk_etcd_mcp.app.runner", "kk_etcd_mcp.app.console", "kk_etcd_mcp.app.signals"} <= app
    importers = {
        module_name(path)
        for path in modules()
        if any(part_of(target) == "app" for target in imported(path) if target.startswith("kk_etcd_mcp."))
    }
    assert {part_of(name) for name in importers} <= APPLICATION


@pytest.mark.parametrize(
    ("source", "layer", "refused"),
    [
        ("from ..app.runner import serve\n", "mcp_server/x.py", "kk_etcd_mcp.app.runner"),
        ("from ..mcp_server.errors import Refused\n", "registry/x.py", "kk_etcd_mcp.mcp_server.errors"),
        ("import kk_etcd_mcp.cli\n", "audit/x.py", "kk_etcd_mcp.cli"),
        ("def f():\n    from ..registry import keys\n", "etcd/x.py", "kk_etcd_mcp.registry"),
        ("from mcp.server.mcpserver.exceptions import ToolError\n", "config_center/x.py", "mcp.server.mcpserver"),
    ],
)
def test_the_check_sees_a_wrong_import(tmp_path: Path, source: str, layer: str, refused: str) -> None:
    """The check itself: a module placed in a layer with an import across it is reported."""
    root = tmp_path / "kk_etcd_mcp"
    path = root / layer
    path.parent.mkdir(parents=True)
    path.write_text(source)
    problems = violations(path, root)
    assert len(problems) == 1 and f"imports {refused}" in problems[0], problems
