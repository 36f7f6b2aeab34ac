"""Take the README's screenshots of the web console and of its views as MCP Apps: a real server, etcd and
health targets, Debian's chromium.

    python docs/screenshots.py          # writes docs/console-*.png and docs/app-*.png

Starts its own etcd (free loopback ports, temp dir), a few health targets (two answering, one not),
``kk-etcd-mcp serve --transport streamable-http`` with two tokens and the audit trail in etcd, fills in
some configuration, users and roles through MCP, then opens each view signed in as the admin token, and
each MCP App view in the test host (tests/apps_host: AppBridge and the TypeScript MCP client; needs npm).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import anyio

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))

from console_browser import chromium  # noqa: E402
from health_servers import HttpHealthServer  # noqa: E402
from mcp_apps_host import build_host, open_host  # noqa: E402
from mcp_helpers import call, http_client, http_server  # noqa: E402

from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_ports  # noqa: E402

ADMIN = "screenshot-admin-token"
READER = "screenshot-read-token"
VIEWPORT = {"width": 1280, "height": 800}


async def prepare(url: str, targets: list[HttpHealthServer]) -> None:
    async with http_client(url, ADMIN) as client:
        fast = {"interval": 2, "timeout": 1, "failures_before_critical": 1}
        for name, target, meta in (
            ("orders", targets[0], {"version": "2.4.1", "zone": "a"}),
            ("orders", targets[1], {"version": "2.4.1", "zone": "b"}),
            ("billing", targets[2], {"version": "1.9.0"}),
        ):
            await call(client, "service_register", name=name, addr=target.addr, check=fast, metadata=meta)
        await call(client, "service_register", name="search", addr="127.0.0.1:9", type="tcp", weight=2)
        db = {"host": "db.internal", "port": 5432, "pool": {"min": 2, "max": 10}}
        await call(client, "kv_put", key="app/orders/db", value=json.dumps(db), format="json")
        db["pool"] = {"min": 4, "max": 20}
        await call(client, "kv_put", key="app/orders/db", value=json.dumps(db, indent=2), format="json")
        await call(
            client,
            "kv_put",
            key="app/orders/features",
            value="checkout_v2: true\nrecommendations: false\n",
            format="yaml",
        )
        await call(client, "kv_put", key="app/billing/currency", value="EUR")
        await call(client, "kv_put", key="app/billing/limits", value='{"daily": 10000}', format="json")
        await call(client, "role_add", name="orders-reader")
        await call(client, "role_grant_permission", role="orders-reader", key="app/orders/", prefix=True)
        await call(client, "role_add", name="billing-writer")
        await call(
            client,
            "role_grant_permission",
            role="billing-writer",
            key="app/billing/",
            prefix=True,
            permission="readwrite",
        )
        await call(client, "user_add", name="orders-svc", roles=["orders-reader"])
        await call(client, "user_add", name="billing-svc", roles=["billing-writer"])


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kk-screenshots-") as tmp_name:
        tmp = Path(tmp_name)
        etcd = EmbeddedEtcd(tmp / "etcd", *free_ports(2), log_file=tmp / "etcd.log")
        await etcd.astart()
        tokens = [
            {"name": "ops", "scope": "admin", "token": ADMIN},
            {"name": "dashboard", "scope": "read", "token": READER},
        ]
        try:
            async with HttpHealthServer() as a, HttpHealthServer() as b, HttpHealthServer() as c:
                with (
                    (tmp / "server.log").open("wb") as log,
                    http_server(
                        etcd.client_url,
                        "streamable-http",
                        stderr=log,
                        http_tokens=json.dumps(tokens),
                        audit_to_etcd="true",
                        backup_dir=str(tmp / "backups"),
                    ) as server,
                ):
                    await prepare(server.url, [a, b, c])
                    await c.stop()  # billing fails: the services view shows it critical
                    await anyio.sleep(4)
                    await shoot(server.port)
                    await shoot_apps(server.port, tmp / "apps-host")
        finally:
            await etcd.astop()


async def shoot(port: int) -> None:
    base = f"http://127.0.0.1:{port}/ui/"
    async with chromium() as browser:
        context = await browser.new_context(viewport=VIEWPORT)
        page = await context.new_page()
        await page.goto(base)
        await page.get_by_label("Bearer token").fill("not-a-token")
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("alert").wait_for()
        await page.screenshot(path=DOCS / "console-sign-in.png")
        await page.get_by_label("Bearer token").fill(ADMIN)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("row").filter(has_text="billing").get_by_text("critical").wait_for()
        await page.screenshot(path=DOCS / "console-services.png", full_page=True)

        await page.goto(base + "#/config?key=app/orders/db")
        await page.get_by_role("table", name="Changes from revision", exact=False).wait_for()
        await page.screenshot(path=DOCS / "console-configuration.png", full_page=True)
        await page.get_by_role("button", name="Edit").click()
        await page.get_by_label("Value to save").fill('{\n  "host": "db.internal",\n  "port" 5432\n}')
        await page.get_by_text("Line 3").wait_for()
        await page.get_by_role("heading", name="Edit value").scroll_into_view_if_needed()
        await page.screenshot(path=DOCS / "console-editor.png")

        await page.goto(base + "#/access")
        await page.get_by_role("table", name="Roles (2)").wait_for()
        await page.screenshot(path=DOCS / "console-access.png", full_page=True)
        await page.goto(base + "#/cluster")
        await page.get_by_role("table", name="Members (1)").wait_for()
        await page.screenshot(path=DOCS / "console-cluster.png", full_page=True)
        await page.goto(base + "#/audit")
        await page.get_by_text("chain intact").wait_for()
        await page.screenshot(path=DOCS / "console-audit.png", full_page=True)

        # Deregistering asks first: the server's question in the dialog.
        await page.goto(base + "#/services")
        await page.get_by_role("button", name="Deregister search at 127.0.0.1:9").click()
        await page.get_by_role("dialog").wait_for()
        await page.screenshot(path=DOCS / "console-confirm.png")
        await page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
        await context.close()

        reader = await browser.new_context(viewport=VIEWPORT)
        page = await reader.new_page()
        await page.goto(base)
        await page.get_by_label("Bearer token").fill(READER)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("row").filter(has_text="billing").get_by_text("critical").wait_for()
        await page.screenshot(path=DOCS / "console-read-only.png")
        await reader.close()


async def shoot_apps(port: int, host_dir: Path) -> None:
    """Each MCP App view as the test host shows it, beside nothing but its tool call's caption."""
    built = build_host(host_dir)
    if isinstance(built, str):
        print(f"no MCP App screenshots: {built}", file=sys.stderr)
        return
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        await open_host(page, built, port, ADMIN)
        views = (
            ("service_list", {}, "app-services.png", "billing"),
            ("kv_history", {"key": "app/orders/db"}, "app-history.png", "Changes from revision"),
            (
                "kv_put",
                {
                    "key": "app/orders/db",
                    "value": '{"host": "db.internal", "port": 6432}',
                    "format": "json",
                    "dry_run": True,
                },
                "app-review.png",
                "Save this value",
            ),
            ("cluster_status", {}, "app-cluster.png", "Members"),
        )
        for tool, arguments, name, ready in views:
            await page.evaluate("window.kkHost.clear()")  # one view at a time: a frame out of sight is not laid out
            shown = await page.evaluate("([tool, args]) => window.kkHost.show(tool, args)", [tool, arguments])
            view = page.frame_locator(f"iframe[title='{shown['title']}']")
            await view.get_by_text(ready).first.wait_for()
            frame = page.locator(f"iframe[title='{shown['title']}']")
            heights = [None, await frame.evaluate("f => f.style.height")]
            while heights[-1] != heights[-2] or heights[-1] == "200px":  # the frame takes the height the view reports
                await anyio.sleep(0.5)
                heights.append(await frame.evaluate("f => f.style.height"))
            figure = page.locator("figure").filter(has=frame)
            box = await figure.bounding_box()
            assert box is not None
            # The whole frame in sight: chromium paints no part of a frame that is out of the viewport.
            await page.set_viewport_size({"width": 1280, "height": int(box["y"] + box["height"]) + 16})
            await anyio.sleep(0.5)
            await figure.screenshot(path=DOCS / name)
            await page.set_viewport_size({"width": 1280, "height": 800})
        await context.close()


if __name__ == "__main__":
    anyio.run(main)
