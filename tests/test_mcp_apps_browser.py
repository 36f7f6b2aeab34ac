"""The console's views as MCP Apps in a real host: a test page with the official ``AppBridge`` (npm
``@modelcontextprotocol/ext-apps``) and the official TypeScript MCP client over streamable HTTP to a real
``kk-etcd-mcp serve``, in Debian's chromium (headless, driven by Playwright), with a real etcd and real
health-check targets.

Each view runs in an iframe sandboxed to scripts only, under the CSP its ``_meta.ui.csp`` allows; its
tool calls go through the bridge, and a call that changes something waits for the person's approval in
the host. What the views did is checked outside them (etcdctl). Every test also fails on any console
error, uncaught exception or CSP violation, in the host page or in a view.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from conftest import EtcdCtl
from console_browser import PageWatch, chromium, chromium_path, missing_reason, row_of
from health_servers import HttpHealthServer
from mcp_apps_host import build_host, open_host
from mcp_helpers import HttpServer, call, http_client, http_server
from playwright.async_api import Browser, FrameLocator, Page, expect
from polling import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

Hosted = tuple[Page, PageWatch]  # the host page and what it (and every view in it) reported as going wrong
ADMIN = "apps-admin-token-0123456789"
READER = "apps-read-token-0123456789"
LIVE = 20_000  # ms: a health change reaches the view within the hub's detection time plus one read (2 s)
expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def host_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build_host(tmp_path_factory.mktemp("apps-host"))
    if isinstance(built, str):
        pytest.skip(built)
    return built


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if chromium_path() is None:
        pytest.skip(missing_reason())
    async with chromium() as launched:
        yield launched


class Served:
    def __init__(self, server: HttpServer, base: str) -> None:
        self.server = server
        self.cfg = f"{base}cfg/"
        self.registry = f"{base}reg/"


@pytest.fixture(scope="module")
def served(etcd_endpoint: str) -> Iterator[Served]:
    base = f"t/{uuid4().hex[:12]}/"
    tokens = [{"name": "ops", "scope": "admin", "token": ADMIN}, {"name": "viewer", "scope": "read", "token": READER}]
    with http_server(
        etcd_endpoint,
        "streamable-http",
        http_tokens=json.dumps(tokens),
        allowed_prefixes=f"{base}cfg/",
        registry_prefix=f"{base}reg/",
    ) as server:
        yield Served(server, base)


@pytest.fixture
async def host(browser: Browser, host_page: Path, served: Served) -> AsyncIterator[Hosted]:
    async with hosted(browser, host_page, served, ADMIN) as opened:
        yield opened


@asynccontextmanager
async def hosted(browser: Browser, host_page: Path, served: Served, token: str) -> AsyncIterator[Hosted]:
    """The test host in a fresh browser context, its MCP client signed in with ``token``."""
    context = await browser.new_context()
    page = await context.new_page()
    watch = PageWatch(page)  # the page's console and errors: the host's and every view's
    try:
        await open_host(page, host_page, served.server.port, token)
        yield page, watch
    finally:
        await context.close()


async def show(page: Page, tool: str, **arguments: Any) -> FrameLocator:
    """Have the host call ``tool`` and render its view; the view's frame, once the sandbox is checked."""
    shown = await page.evaluate("([tool, args]) => window.kkHost.show(tool, args)", [tool, arguments])
    assert shown["uri"].startswith("ui://kk-etcd-mcp/")
    frame = page.locator(f"iframe[title='{shown['title']}']")
    # Scripts only: no same-origin, forms, popups or top navigation.
    assert await frame.get_attribute("sandbox") == "allow-scripts"
    return page.frame_locator(f"iframe[title='{shown['title']}']")


def no_errors(watch: PageWatch) -> None:
    watch.assert_none()


async def test_the_services_view_turns_an_instance_critical_when_its_target_stops(served: Served, host: Hosted) -> None:
    page, watch = host
    name = f"web-{uuid4().hex[:6]}"
    check = {"interval": 1, "timeout": 1, "failures_before_critical": 1}
    async with HttpHealthServer() as target:
        async with http_client(served.server.url, ADMIN) as client:
            await call(client, "service_register", name=name, addr=target.addr, type="http", check=check)
        view = await show(page, "service_list")
        row = row_of(view, name, target.addr)
        await expect(row.get_by_text("passing", exact=True)).to_be_visible(timeout=LIVE)
        await target.stop()
        await expect(row.get_by_text("critical", exact=True)).to_be_visible(timeout=LIVE)
        # Check now runs service_check (read-only: the host lets it through without asking).
        await view.get_by_role("button", name=f"Check {name} at {target.addr} now").click()
        await expect(view.get_by_role("status").filter(has_text=f"Check of {name}")).to_contain_text("critical")
        await expect(page.get_by_role("dialog")).to_have_count(0)
    no_errors(watch)


async def test_rollback_from_the_history_view_asks_the_host_and_restores_the_value(
    served: Served, host: Hosted, etcdctl: EtcdCtl
) -> None:
    page, watch = host
    key = f"{served.cfg}app/limits"
    etcdctl("put", key, '{"rate": 10}')
    first = int(json.loads(etcdctl("get", key, "-w", "json").stdout)["kvs"][0]["mod_revision"])
    etcdctl("put", key, '{"rate": 99}')

    view = await show(page, "kv_history", key=key)
    await expect(view.get_by_role("table", name=f"Versions of {key}, newest first")).to_be_visible()
    await expect(view.get_by_role("table").filter(has_text='"rate": 99').first).to_be_visible()

    # Deny: the host refuses the call, the view says so, nothing changes.
    await view.get_by_role("button", name=f"Roll back to revision {first}").click()
    approval = page.get_by_role("dialog", name="Approve a tool call")
    await expect(approval).to_contain_text("kv_rollback")
    await approval.get_by_role("button", name="Deny").click()
    await expect(view.get_by_role("alert")).to_contain_text("The host did not run kv_rollback")
    assert etcdctl("get", key, "--print-value-only").stdout.strip() == '{"rate": 99}'

    # Allow: the value comes back, and the history shows the new version.
    await view.get_by_role("button", name=f"Roll back to revision {first}").click()
    await expect(approval).to_contain_text(f'"to_revision":{first}')
    assert etcdctl("get", key, "--print-value-only").stdout.strip() == '{"rate": 99}'  # nothing before approval
    await approval.get_by_role("button", name="Allow").click()
    await expect(view.get_by_role("status").filter(has_text="Rolled back")).to_be_visible()
    assert etcdctl("get", key, "--print-value-only").stdout.strip() == '{"rate": 10}'
    watch.allowed.append("the person declined kv_rollback")  # the host's own log of the refused call, if any
    no_errors(watch)


async def test_the_review_view_shows_what_is_wrong_and_saves_a_valid_proposal_once_approved(
    served: Served, host: Hosted, etcdctl: EtcdCtl
) -> None:
    page, watch = host
    key = f"{served.cfg}app/db"
    etcdctl("put", key, '{"host": "db1", "port": 5432}')

    broken = await show(page, "kv_put", key=key, value='{"host": "db2",\n "port": }', format="json", dry_run=True)
    await expect(broken.get_by_role("heading", name="Not valid json")).to_be_visible()
    await expect(broken.get_by_text("Line 2, column 11: Unexpected token")).to_be_visible()  # the parser's place
    await expect(broken.get_by_role("alert").filter(has_text="The server refused this value")).to_contain_text(
        "invalid json at line 2"  # and the server's own sentence
    )
    await expect(broken.get_by_role("button", name="Save this value")).to_have_count(0)

    proposal = '{"host": "db2", "port": 5432}'
    view = await show(page, "kv_put", key=key, value=proposal, format="json", dry_run=True)
    await expect(view.get_by_text("Proposed, not written yet")).to_be_visible()
    await expect(view.get_by_role("heading", name="Current value (revision")).to_be_visible()
    await expect(view.get_by_text("1 line differs").or_(view.get_by_text("2 lines differ"))).to_be_visible()
    await view.get_by_role("button", name="Save this value").click()
    approval = page.get_by_role("dialog", name="Approve a tool call")
    await expect(approval).to_contain_text("kv_put")
    assert json.loads(etcdctl("get", key, "--print-value-only").stdout) == {"host": "db1", "port": 5432}
    await approval.get_by_role("button", name="Allow").click()
    await expect(view.get_by_role("status").filter(has_text=f"Saved {key}")).to_be_visible()
    assert json.loads(etcdctl("get", key, "--print-value-only").stdout) == {"host": "db2", "port": 5432}
    no_errors(watch)


async def test_the_cluster_view_shows_the_members(host: Hosted) -> None:
    page, watch = host
    view = await show(page, "cluster_status")
    await expect(view.get_by_role("heading", name="Cluster", exact=True)).to_be_visible()
    await expect(view.get_by_role("table").first).to_contain_text("leader")
    no_errors(watch)
    # The watch hears the views' frames too (else "no errors" above would prove nothing about them).
    (frame,) = [f for f in page.frames if f is not page.main_frame]
    await frame.evaluate("console.error('seen from the view')")
    await eventually(lambda: "console error: seen from the view" in watch.errors, "the view's console error heard")


async def test_a_read_token_sees_no_control_that_changes_anything(
    served: Served, browser: Browser, host_page: Path, etcdctl: EtcdCtl
) -> None:
    key = f"{served.cfg}app/read-only"
    etcdctl("put", key, "one")
    etcdctl("put", key, "two")
    name = f"ro-{uuid4().hex[:6]}"
    async with http_client(served.server.url, ADMIN) as client:
        await call(client, "service_register", name=name, addr="127.0.0.1:9", type="tcp")
    async with hosted(browser, host_page, served, READER) as (page, watch):
        services = await show(page, "service_list")
        row = row_of(services, name, "127.0.0.1:9")
        await expect(row.get_by_role("button", name=f"Check {name} at 127.0.0.1:9 now")).to_be_visible()
        await expect(row.get_by_role("button", name=f"Deregister {name} at 127.0.0.1:9")).to_have_count(0)
        history = await show(page, "kv_history", key=key)
        await expect(history.get_by_role("table", name=f"Versions of {key}, newest first")).to_be_visible()
        await expect(history.get_by_role("button", name="Roll back", exact=False)).to_have_count(0)
        no_errors(watch)
