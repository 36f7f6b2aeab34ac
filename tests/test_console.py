"""The web console in a real browser: Debian's chromium (headless, driven by Playwright) against a real
``kk-etcd-mcp serve --transport streamable-http`` with a real etcd and real health-check targets.

The page is driven as a screen reader would: by role and accessible name, by label. What the page did is
checked outside it: values with etcdctl, the audit trail through the server, files on disk. Every test
also fails on any console error, uncaught exception or Content-Security-Policy violation in the page.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from conftest import EtcdCtl
from console_browser import PageWatch, chromium, chromium_path, missing_reason, row_of
from health_servers import HttpHealthServer
from mcp_helpers import HttpServer, call, http_client, http_server
from playwright.async_api import Browser, Page, expect

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ADMIN = "console-admin-token-0123456789"
READER = "console-read-token-0123456789"
LIVE = 20_000  # ms: a health change reaches the page within the hub's detection time (about 2 s here)
expect.set_options(timeout=10_000)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if chromium_path() is None:
        pytest.skip(missing_reason())
    async with chromium() as launched:
        yield launched


class Console:
    """One server for this module's tests: its keys under ``cfg`` and its registry under ``reg``."""

    def __init__(self, server: HttpServer, base: str, tmp: Path) -> None:
        self.server = server
        self.cfg = f"{base}cfg/"
        self.registry = f"{base}reg/"
        self.tmp = tmp
        self.url = f"http://127.0.0.1:{server.port}/ui/"


@pytest.fixture(scope="module")
def console(etcd_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    base = f"t/{uuid4().hex[:12]}/"
    tmp = tmp_path_factory.mktemp("console")
    tokens = [{"name": "ops", "scope": "admin", "token": ADMIN}, {"name": "viewer", "scope": "read", "token": READER}]
    with http_server(
        etcd_endpoint,
        "streamable-http",
        http_tokens=json.dumps(tokens),
        allowed_prefixes=f"{base}cfg/",
        registry_prefix=f"{base}reg/",
        audit_to_etcd="true",
        audit_file=str(tmp / "audit.jsonl"),
        backup_dir=str(tmp / "backups"),
        confirm_destructive="elicit",
    ) as server:
        yield Console(server, base, tmp)


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[tuple[Page, PageWatch]]:
    context = await browser.new_context(accept_downloads=True)
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    opened = await context.new_page()
    try:
        yield opened, PageWatch(opened)
    finally:
        await context.close()


async def sign_in(page: Page, console: Console, token: str, where: str = "") -> None:
    await page.goto(console.url + where)
    await page.get_by_label("Bearer token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("navigation", name="Views")).to_be_visible()


def no_errors(watch: PageWatch) -> None:
    watch.assert_none()


# Services -------------------------------------------------------------------------------------------


async def test_services_show_an_instance_registered_through_mcp_and_turn_critical_live(
    console: Console, page: tuple[Page, PageWatch], etcdctl: EtcdCtl
) -> None:
    tab, watch = page
    name, other = f"web-{uuid4().hex[:6]}", f"db-{uuid4().hex[:6]}"
    check = {"interval": 1, "timeout": 1, "failures_before_critical": 1}
    async with HttpHealthServer() as target, HttpHealthServer() as second:
        async with http_client(console.server.url, ADMIN) as client:
            await call(client, "service_register", name=name, addr=target.addr, type="http", check=check)
            await call(client, "service_register", name=other, addr=second.addr, type="http", check=check)
        await sign_in(tab, console, ADMIN)
        row = row_of(tab, name, target.addr)
        await expect(row.get_by_text("passing", exact=True)).to_be_visible(timeout=LIVE)
        await tab.evaluate("window.__sameDocument = true")

        await target.stop()  # the target fails: the row turns critical without a reload
        await expect(row.get_by_text("critical", exact=True)).to_be_visible(timeout=LIVE)
        assert await tab.evaluate("window.__sameDocument === true")
        await expect(row_of(tab, other, second.addr).get_by_text("passing", exact=True)).to_be_visible()

        # Filters: by name, by status.
        await tab.get_by_label("Filter by name").fill(name)
        await expect(row_of(tab, other, second.addr)).to_be_hidden()
        await tab.get_by_label("Filter by name").fill("")
        await tab.get_by_label("Filter by status").select_option("passing")
        await expect(row).to_be_hidden()
        await expect(row_of(tab, other, second.addr)).to_be_visible()
        await tab.get_by_label("Filter by status").select_option("")

        # Check now: service_check, through the page.
        await tab.get_by_role("button", name=f"Check {name} at {target.addr} now").click()
        await expect(tab.get_by_role("status").filter(has_text=f"Check of {name} at {target.addr}")).to_contain_text(
            "critical"
        )

        # Deregister asks first (the server's question); Cancel changes nothing, Confirm removes it.
        key = f"{console.registry}registration/Http/{name}/{target.addr}"
        await tab.get_by_role("button", name=f"Deregister {name} at {target.addr}").click()
        dialog = tab.get_by_role("dialog")
        await expect(dialog).to_contain_text("Confirm service_deregister: ")
        await expect(dialog).to_contain_text(name)
        await dialog.get_by_role("button", name="Cancel").click()
        await expect(tab.get_by_text("Cancelled: nothing was changed.")).to_be_visible()
        assert etcdctl("get", key, "--print-value-only").stdout.strip(), "Cancel removed the registration"
        await expect(row).to_be_visible()

        await tab.get_by_role("button", name=f"Deregister {name} at {target.addr}").click()
        await tab.get_by_role("dialog").get_by_role("button", name="Confirm").click()
        await expect(row).to_have_count(0)
        assert etcdctl("get", key, "--print-value-only").stdout.strip() == ""
    no_errors(watch)


async def test_register_form_adds_an_instance(console: Console, page: tuple[Page, PageWatch], etcdctl: EtcdCtl) -> None:
    tab, watch = page
    name = f"api-{uuid4().hex[:6]}"
    await sign_in(tab, console, ADMIN)
    await tab.get_by_text("Register an instance").click()
    await tab.get_by_label("Service name").fill(name)
    await tab.get_by_label("Address", exact=True).fill("127.0.0.1:9")
    await tab.get_by_label("Type").select_option("tcp")
    await tab.get_by_label("Metadata").fill("version=1.2")
    await tab.get_by_role("button", name="Register", exact=True).click()
    await expect(tab.get_by_text(re.compile(r"^Registered: "))).to_be_visible()
    await expect(row_of(tab, name, "127.0.0.1:9")).to_contain_text("version=1.2")  # live, from the subscription
    ext = etcdctl("get", f"{console.registry}registration_ext/Tcp/{name}/127.0.0.1:9", "--print-value-only").stdout
    assert json.loads(ext)["Metadata"] == {"version": "1.2"}
    no_errors(watch)


# Configuration --------------------------------------------------------------------------------------


async def test_edit_validates_saves_shows_conflicts_diffs_history_and_rolls_back(
    console: Console, page: tuple[Page, PageWatch], etcdctl: EtcdCtl
) -> None:
    tab, watch = page
    folder = f"{console.cfg}app{uuid4().hex[:6]}/"
    key = f"{folder}db"
    etcdctl("put", key, '{"host": "a", "port": 5432}')
    first_revision = json.loads(etcdctl("get", key, "-w", "json").stdout)["kvs"][0]["mod_revision"]

    await sign_in(tab, console, ADMIN, f"#/config?prefix={console.cfg}")
    await tab.get_by_role("link", name=folder.removeprefix(console.cfg)).click()
    await tab.get_by_role("link", name="db", exact=True).click()
    await expect(tab.get_by_role("heading", name=key)).to_be_visible()
    await expect(tab.get_by_label(f"Value of {key}")).to_have_text('{\n  "host": "a",\n  "port": 5432\n}')

    # A syntax error: the parser's line and column, and nothing is written.
    await tab.get_by_role("button", name="Edit").click()
    editor = tab.get_by_label("Value to save")
    await editor.fill('{\n  "host": "b",\n  "port" 5432\n}')
    await expect(tab.get_by_text(re.compile(r"^Line 3, column 10: "))).to_be_visible()
    await tab.get_by_role("button", name="Save").click()
    await expect(tab.get_by_role("alert")).to_contain_text("Not saved: Line 3, column 10")
    assert etcdctl("get", key, "--print-value-only").stdout.strip() == '{"host": "a", "port": 5432}'

    # A valid value lands.
    await editor.fill('{"host": "b", "port": 5432}')
    await expect(tab.get_by_text("Valid json.")).to_be_visible()
    await tab.get_by_role("button", name="Save").click()
    await expect(tab.get_by_text(re.compile(rf"^Saved {re.escape(key)} at revision \d+\."))).to_be_visible()
    assert etcdctl("get", key, "--print-value-only").stdout.strip() == '{"host": "b", "port": 5432}'

    # Someone else writes between load and save: their value beside mine, then overwrite knowingly.
    await tab.get_by_role("button", name="Edit").click()
    etcdctl("put", key, '{"host": "theirs", "port": 5432}')
    await editor.fill('{"host": "mine", "port": 5432}')
    await tab.get_by_role("button", name="Save").click()
    conflict = tab.get_by_role("alert").filter(has_text="Someone else changed this key")
    await expect(conflict).to_be_visible()
    diff = conflict.get_by_role("table", name="Their value compared with yours")
    await expect(diff.get_by_role("row").filter(has_text="removed")).to_contain_text('"host": "theirs"')
    await expect(diff.get_by_role("row").filter(has_text="added")).to_contain_text('"host": "mine"')
    assert etcdctl("get", key, "--print-value-only").stdout.strip() == '{"host": "theirs", "port": 5432}'
    await conflict.get_by_role("button", name="Overwrite with mine").click()
    await expect(tab.get_by_text(re.compile(rf"^Saved {re.escape(key)} at revision"))).to_be_visible()
    assert etcdctl("get", key, "--print-value-only").stdout.strip() == '{"host": "mine", "port": 5432}'

    # History: a diff between any two versions, then Rollback (asked first).
    history = tab.get_by_role("table", name=f"Versions of {key}, newest first")
    await expect(history.get_by_role("row")).to_have_count(5)  # header + 4 versions
    await tab.get_by_label(f"Compare from revision {first_revision}").check()
    await expect(
        tab.get_by_role("table", name=re.compile(rf"^Changes from revision {first_revision} to"))
    ).to_contain_text('"host": "mine"')
    await tab.get_by_role("button", name=f"Roll back to revision {first_revision}").click()
    dialog = tab.get_by_role("dialog")
    await expect(dialog).to_contain_text("Confirm kv_rollback: ")
    await dialog.get_by_role("button", name="Confirm").click()
    await expect(tab.get_by_text(re.compile(r"^Rolled back: "))).to_be_visible()
    assert etcdctl("get", key, "--print-value-only").stdout.strip() == '{"host": "a", "port": 5432}'
    no_errors(watch)


async def test_export_then_import_shows_the_plan_before_applying_it(
    console: Console, page: tuple[Page, PageWatch], etcdctl: EtcdCtl, tmp_path: Path
) -> None:
    tab, watch = page
    folder = f"{console.cfg}io{uuid4().hex[:6]}/"
    etcdctl("put", f"{folder}a", "1")
    etcdctl("put", f"{folder}b", "2")
    await sign_in(tab, console, ADMIN, f"#/config?prefix={folder}")
    await tab.get_by_text("Export or import").click()
    await expect(tab.get_by_label("Prefix to export")).to_have_value(folder)
    async with tab.expect_download() as downloading:
        await tab.get_by_role("button", name="Export to a file").click()
    exported = json.loads(Path(await (await downloading.value).path()).read_text())
    assert {item["key"]: item["value"] for item in exported["items"]} == {f"{folder}a": "1", f"{folder}b": "2"}

    # The file now changes a, drops b and adds c; with replace, b goes: the plan says so before anything is done.
    exported["items"] = [{"key": f"{folder}a", "value": "10"}, {"key": f"{folder}c", "value": "3"}]
    document = tmp_path / "import.json"
    document.write_text(json.dumps(exported))
    await tab.get_by_label("File to import").set_input_files(document)
    await tab.get_by_label("Mode").select_option("replace")
    await tab.get_by_role("button", name="Show the plan").click()
    plan = tab.get_by_role("region", name="The import's plan")
    await expect(plan).to_contain_text("Create: 1")
    await expect(plan).to_contain_text("Update: 1")
    await expect(plan).to_contain_text("Delete: 1")
    assert etcdctl("get", f"{folder}c", "--print-value-only").stdout == ""  # only planned so far

    await plan.get_by_role("button", name="Apply this plan").click()
    dialog = tab.get_by_role("dialog")
    await expect(dialog).to_contain_text("Confirm kv_import: ")  # it deletes b: the server asks
    await dialog.get_by_role("button", name="Confirm").click()
    await expect(tab.get_by_text(re.compile(r"^Imported: 3 operations applied"))).to_be_visible()
    values = etcdctl("get", folder, "--prefix").stdout.split()
    assert values == [f"{folder}a", "10", f"{folder}c", "3"]
    no_errors(watch)


# Access, cluster, audit -----------------------------------------------------------------------------


async def test_access_cluster_and_audit_views(console: Console, page: tuple[Page, PageWatch]) -> None:
    tab, watch = page
    user, role = f"u{uuid4().hex[:8]}", f"r{uuid4().hex[:8]}"
    await sign_in(tab, console, ADMIN, "#/access")
    try:
        await tab.get_by_text("Add a role").click()
        await tab.get_by_label("Role name").fill(role)
        await tab.get_by_role("button", name="Add role").click()
        await expect(tab.get_by_role("rowheader", name=role, exact=True)).to_be_visible()

        await tab.get_by_text("Add a user").click()
        await tab.get_by_label("User name").fill(user)
        await tab.get_by_label("Roles").fill(role)
        await tab.get_by_role("button", name="Add user").click()
        password = tab.get_by_label(f"Generated password for {user}")
        await expect(password).to_have_value(re.compile(r"^\S{16,}$"))
        await tab.get_by_role("button", name="Copy password").click()
        await expect(tab.get_by_text("Copied.")).to_be_visible()
        assert await tab.evaluate("navigator.clipboard.readText()") == await password.input_value()
        await tab.get_by_role("button", name="I have stored it").click()
        await expect(password).to_have_count(0)  # shown once: gone for good

        # Revoking takes access away: the server asks; Cancel keeps the role.
        await tab.get_by_role("button", name=f"Revoke role {role} from {user}").click()
        await tab.get_by_role("dialog").get_by_role("button", name="Cancel").click()
        await expect(tab.get_by_text("Cancelled: nothing was changed.")).to_be_visible()
        async with http_client(console.server.url, ADMIN) as client:
            assert (await call(client, "user_get", name=user))["roles"] == [role]
    finally:
        async with http_client(console.server.url, ADMIN) as client:
            await client.call_tool("user_delete", {"name": user})  # the session etcd is shared: leave no user
            await client.call_tool("role_delete", {"name": role})

    await tab.get_by_role("link", name="Cluster").click()
    await expect(tab.get_by_role("table", name="Members (1)")).to_contain_text("leader")
    await tab.get_by_label("File name").fill("from-console.db")
    await tab.get_by_role("button", name="Take a snapshot").click()
    await expect(tab.get_by_text(re.compile(r"^Saved a snapshot of revision \d+"))).to_be_visible()
    assert (console.tmp / "backups" / "from-console.db").stat().st_size > 0

    await tab.get_by_role("link", name="Audit").click()
    await expect(tab.get_by_text("chain intact")).to_be_visible()
    entries = tab.get_by_role("table", name=re.compile(r"^The newest \d+ entries"))
    await expect(entries.get_by_role("row").filter(has_text="cluster_snapshot")).to_contain_text("ops")
    no_errors(watch)


# Tokens ---------------------------------------------------------------------------------------------


async def test_a_read_token_sees_no_write_control_and_a_forged_write_is_refused_and_audited(
    console: Console, page: tuple[Page, PageWatch], etcdctl: EtcdCtl
) -> None:
    tab, watch = page
    key = f"{console.cfg}ro{uuid4().hex[:6]}"
    etcdctl("put", key, "before")
    async with http_client(console.server.url, ADMIN) as client:
        await call(client, "kv_put", key=key, value="now")  # two versions: history has a rollback candidate
        await call(client, "service_register", name="ro", addr="127.0.0.1:9", type="tcp")

    await sign_in(tab, console, READER)
    await expect(tab.locator(".who-name")).to_have_text("viewer")
    await expect(tab.locator(".who-scope")).to_have_text("read")
    await expect(tab.get_by_text("Your token's scope is read: you can look, not change.")).to_be_visible()
    nav = tab.get_by_role("navigation", name="Views")
    # Reading users, roles and the cluster needs only scope read; the audit trail needs admin.
    await expect(nav.get_by_role("link")).to_have_text(["Services", "Configuration", "Access", "Cluster"])

    await expect(row_of(tab, "ro", "127.0.0.1:9")).to_be_visible()
    await expect(tab.get_by_role("button", name=re.compile("^Check ro at"))).to_be_visible()  # read-only tool
    await expect(tab.get_by_role("button", name=re.compile("^Deregister"))).to_have_count(0)
    await expect(tab.get_by_text("Register an instance")).to_have_count(0)

    await tab.goto(f"{console.url}#/config?key={key}")
    await expect(tab.get_by_label(f"Value of {key}")).to_have_text("now")
    await expect(tab.get_by_role("table", name=f"Versions of {key}, newest first")).to_be_visible()
    for name in ("Edit", "Delete", "Save", "New key", re.compile("^Roll back")):
        await expect(tab.get_by_role("button", name=name)).to_have_count(0)
    await expect(tab.get_by_role("button")).to_have_text(["Sign out"])  # the only button on the page

    await nav.get_by_role("link", name="Access").click()
    await expect(tab.get_by_role("table", name=re.compile(r"^Users"))).to_be_visible()
    await expect(tab.get_by_role("button")).to_have_text(["Sign out"])
    await expect(tab.get_by_text(re.compile("^Add a (user|role)"))).to_have_count(0)
    await nav.get_by_role("link", name="Cluster").click()
    await expect(tab.get_by_role("table", name="Members (1)")).to_be_visible()
    await expect(tab.get_by_role("button")).to_have_text(["Sign out", "Refresh"])

    # A write forged from the page with the read token: refused, audited under the token's name.
    answer = await tab.evaluate(FORGED_WRITE, {"token": READER, "key": key})
    result = sse_result(answer)
    assert result["isError"] is True
    assert "scope" in result["content"][0]["text"]
    assert etcdctl("get", key, "--print-value-only").stdout.strip() == "now"
    async with http_client(console.server.url, ADMIN) as client:
        log = (await client.call_tool("audit_log", {"tool": "kv_put", "limit": 20})).structured_content
    assert log is not None
    refused = [e for e in log["entries"] if e["client"] == "viewer" and e["outcome"] == "refused"]
    assert refused and refused[0]["arguments"]["key"] == key
    no_errors(watch)


FORGED_WRITE = """async ({token, key}) => {
  const post = async (body, session) => {
    const headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                     "authorization": `Bearer ${token}`};
    if (session) { headers["mcp-session-id"] = session; headers["mcp-protocol-version"] = "2025-11-25"; }
    const response = await fetch("/mcp", {method: "POST", headers, body: JSON.stringify(body)});
    return {status: response.status, session: response.headers.get("mcp-session-id"), text: await response.text()};
  };
  const init = await post({jsonrpc: "2.0", id: 1, method: "initialize", params: {protocolVersion: "2025-11-25",
    capabilities: {}, clientInfo: {name: "forger", version: "1"}}});
  await post({jsonrpc: "2.0", method: "notifications/initialized"}, init.session);
  return await post({jsonrpc: "2.0", id: 2, method: "tools/call",
    params: {name: "kv_put", arguments: {key, value: "forged"}}}, init.session);
}"""


def sse_result(answer: dict[str, Any]) -> dict[str, Any]:
    """The JSON-RPC result inside a streamable HTTP answer (plain JSON or an event stream)."""
    assert answer["status"] == 200, answer
    text = answer["text"]
    lines = [line.removeprefix("data:").strip() for line in text.splitlines() if line.startswith("data:")]
    for line in lines or [text]:
        message = json.loads(line)
        if message.get("id") == 2:
            return message["result"]  # type: ignore[no-any-return]
    raise AssertionError(f"no answer to the call in {text!r}")


async def test_a_wrong_token_is_a_login_error_and_the_page_is_served_with_a_strict_policy(
    console: Console, page: tuple[Page, PageWatch]
) -> None:
    tab, watch = page
    response = await tab.goto(console.url)
    assert response is not None and response.ok
    headers = response.headers
    policy = headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert await tab.locator("script:not([src])").count() == 0  # no inline script to allow

    watch.allowed.append("status of 403")  # the refused token's request: the browser logs it
    await tab.get_by_label("Bearer token").fill("not-the-token")
    await tab.get_by_role("button", name="Sign in").click()
    await expect(tab.get_by_role("alert")).to_contain_text("The server refused to sign you in: ")
    await expect(tab.get_by_role("alert")).to_contain_text("Authorization: Bearer <token>")
    assert await tab.evaluate("sessionStorage.length") == 0
    await expect(tab.get_by_label("Bearer token")).to_be_visible()
    no_errors(watch)


async def test_over_sse_without_tokens_the_console_connects_at_once(
    etcd_endpoint: str, page: tuple[Page, PageWatch]
) -> None:
    """transport sse: /mcp is served beside /sse for the console; on loopback without tokens no sign-in."""
    tab, watch = page
    base = f"t/{uuid4().hex[:12]}/"
    with http_server(etcd_endpoint, "sse", allowed_prefixes=f"{base}cfg/", registry_prefix=f"{base}reg/") as server:
        await tab.goto(f"http://127.0.0.1:{server.port}/ui/")
        await expect(tab.locator(".who-name")).to_have_text("http")
        await expect(tab.get_by_role("heading", name="Services")).to_be_visible()
        await expect(tab.get_by_text(re.compile(r"^0 instances"))).to_be_visible()
        await expect(tab.get_by_role("button", name="Sign out")).to_have_count(0)
    no_errors(watch)
