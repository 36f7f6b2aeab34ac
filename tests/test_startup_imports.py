"""The command line starts without what it does not need: ``--version`` and ``--help`` (and the package
root, with its settings) import no etcd3aio, grpc or aiohttp, serving imports none of the SDK's modules;
the SDK's names still resolve on first use.

Each case runs in a fresh interpreter, since this test process has imported everything already.
"""

import json
import subprocess
import sys

import pytest

HEAVY = ("etcd3aio", "grpc", "aiohttp")

REPORT = f"import json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"


def heavy_modules_after(code: str) -> list[str]:
    """The heavy libraries a fresh interpreter has imported after running ``code``."""
    program = f"import sys\n{code}\n{REPORT}"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True)
    return list(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_import_no_etcd_client(flag: str) -> None:
    code = (
        "import contextlib, io\nfrom kk_etcd_mcp.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    main([{flag!r}])"
    )
    assert heavy_modules_after(code) == []


def test_package_root_and_settings_import_no_etcd_client() -> None:
    code = "import kk_etcd_mcp\nfrom kk_etcd_mcp import Settings\nSettings(endpoints=['http://127.0.0.1:2379'])"
    assert heavy_modules_after(code) == []


def test_serving_stdio_imports_neither_aiohttp_nor_the_http_transport() -> None:
    """aiohttp comes with the first HTTP check, the HTTP middleware with an HTTP transport."""
    code = (
        "import kk_etcd_mcp.app.runner, kk_etcd_mcp.registry.checkers\n"
        "assert 'kk_etcd_mcp.mcp_server.http' not in sys.modules"
    )
    assert heavy_modules_after(code) == ["etcd3aio", "grpc"]


def test_serving_imports_neither_the_sdk_nor_the_embedded_etcd() -> None:
    """The SDK's ConfigClient, live values and ServiceRegistry are for services, not for the server; the
    embedded etcd's modules come only with ``embedded_etcd``."""
    sdk = ["kk_etcd_mcp.config_center.client", "kk_etcd_mcp.config_center.live", "kk_etcd_mcp.registry.sdk"]
    embedded = ["kk_etcd_mcp.etcd.embedded", "kk_etcd_mcp.holders"]
    code = f"import kk_etcd_mcp.app.runner\nprint([m for m in {sdk + embedded!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", f"import sys\n{code}"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_sdk_names_of_the_subpackages_resolve_on_first_use() -> None:
    import kk_etcd_mcp.config_center as center
    import kk_etcd_mcp.config_center.client as client
    import kk_etcd_mcp.config_center.live as live
    import kk_etcd_mcp.registry as registry
    import kk_etcd_mcp.registry.sdk as sdk

    assert (center.ConfigClient, center.Versioned) == (client.ConfigClient, client.Versioned)
    assert (center.LiveConfig, center.LiveConfigMap) == (live.LiveConfig, live.LiveConfigMap)
    assert (registry.ServiceRegistry, registry.KeptRegistration) == (sdk.ServiceRegistry, sdk.KeptRegistration)


def test_sdk_names_resolve_on_first_use() -> None:
    code = (
        "import kk_etcd_mcp\nfrom kk_etcd_mcp import EtcdClient\nfrom kk_etcd_mcp.etcd.client import EtcdClient as E\n"
        "assert EtcdClient is E and kk_etcd_mcp.EtcdClient is E"
    )
    assert {"etcd3aio", "grpc"} <= set(heavy_modules_after(code))


def test_an_unknown_name_is_an_attribute_error() -> None:
    import kk_etcd_mcp
    import kk_etcd_mcp.etcd

    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        kk_etcd_mcp.NoSuchThing  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        kk_etcd_mcp.etcd.NoSuchThing  # noqa: B018
