"""A real browser for the web console's tests: Debian's chromium, headless, driven by Playwright for Python.

Playwright's own browser download (``playwright install``) is never used: the machine has no internet
but its package registries, so ``.ci/run`` installs Debian's ``chromium`` and this module launches it by
path (``KK_TEST_CHROMIUM`` names another). Where no chromium is found the tests that need it skip,
saying so. Each launch gets a fresh profile directory (Playwright's temporary user-data-dir) and the flags that
keep chromium off the network.

``PageWatch`` collects what a page reports as going wrong (console errors, uncaught exceptions,
Content-Security-Policy violations), so a test can assert there were none.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, ConsoleMessage, Error, FrameLocator, Locator, Page, async_playwright

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # the tests run as root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
]


def chromium_path() -> Path | None:
    given = os.environ.get("KK_TEST_CHROMIUM")
    if given:
        return Path(given)
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def missing_reason() -> str:
    return (
        "no chromium to drive: install Debian's chromium (apt-get install chromium; .ci/run does) "
        "or set KK_TEST_CHROMIUM to a chromium binary"
    )


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's chromium under Playwright; Playwright gives each launch a fresh, temporary profile
    (user-data-dir), and each test opens its own context (no storage shared between tests)."""
    path = chromium_path()
    if path is None:
        raise RuntimeError(missing_reason())
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(path), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class PageWatch:
    """Errors a page reported: console errors, uncaught exceptions, CSP violations."""

    page: Page
    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)  # substrings of expected errors (a refused login's 403)

    def __post_init__(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", self._page_error)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning") and not any(a in message.text for a in self.allowed):
            self.errors.append(f"console {message.type}: {message.text}")

    def _page_error(self, error: Error) -> None:
        self.errors.append(f"uncaught: {error}")

    def assert_none(self) -> None:
        assert self.errors == [], self.errors


def row_of(scope: Page | FrameLocator, name: str, addr: str) -> Locator:
    """The services table's row of one instance (in the console's page or a view's frame)."""
    return (
        scope.get_by_role("row").filter(has=scope.get_by_role("rowheader", name=name, exact=True)).filter(has_text=addr)
    )
