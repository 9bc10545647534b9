"""The console in a real browser: Debian's Chromium driven by Playwright (the ``playwright`` wheel's
driver only; never ``playwright install``: ``make test`` installs ``chromium`` and a CJK font through
apt), against the API with its pages served by a real uvicorn on a free port, the views kept up by
projections running beside it.

Each test gets a fresh browser profile (its own user-data-dir), so no cookie leaks between tests;
every page's console errors and CSP violations fail the test that caused them.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from adapters.api.guards import ServerSettings
from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from projections.runner import Projections
from tests.console import console_app
from tests.http_server import serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP, PHONE = {"width": 1440, "height": 900}, {"width": 390, "height": 844}
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
WAIT_MS = 15_000  # how long a page may take to show what a test waits for (a shared 2-core machine)
expect.set_options(timeout=WAIT_MS)


@dataclass
class Console:
    """The served console: its base URL, the app (for users and the ledger) and the running views."""

    base: str
    app: Any
    ledger: Ledger
    projections: Projections

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def console_options() -> dict[str, Any]:
    """More arguments of ``create_app`` for ``console`` (a module overrides it, e.g. with payment channels)."""
    return {}


@pytest.fixture
def console(ledger: Ledger, database_url: str, console_options: dict[str, Any]) -> Iterator[Console]:
    app = console_app(ledger, database_url, **console_options)
    projections = Projections(ledger.applications, eventsourcing_env(database_url))
    stop = threading.Event()
    views = threading.Thread(target=projections.run_forever, args=(stop,), name="views", daemon=True)
    views.start()
    try:
        with serving(app, ServerSettings()) as port:
            yield Console(f"http://127.0.0.1:{port}", app, ledger, projections)
    finally:
        stop.set()
        views.join(timeout=30)
        projections.close()


@dataclass
class Problems:
    """What the browser complained of: console errors (CSP violations among them) and page errors."""

    seen: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", lambda m: self.seen.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.seen.append(f"page error: {e}"))


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    """A fresh Chromium profile with a desktop-sized window."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, viewport=DESKTOP,
            locale="zh-CN", timezone_id="Asia/Shanghai")
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: BrowserContext, console: Console) -> Iterator[Page]:
    """A tab on the console; the test fails if any page it opened logged an error or broke the CSP."""
    problems = Problems()
    tab = browser.pages[0] if browser.pages else browser.new_page()
    problems.watch(tab)
    yield tab
    # a 4xx page (a refused sign-in, a 403 or 404 the test asks for) is logged by the browser: not a problem
    real = [p for p in problems.seen if "the server responded with a status of 4" not in p]
    assert not real, real


def screenshots(page: Page, name: str) -> list[Path]:
    """The page now shown, in Chinese and in English, at desktop and phone sizes, under var/screenshots/
    (kept out of git; docs/console.md shows the best of them). The page is loaded again for each language,
    so it must be one a GET shows (not the answer to a form). Leaves it in Chinese, desktop size."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    saved = []
    address = urlsplit(page.url)
    query = [(k, v) for k, v in parse_qsl(address.query) if k != "lang"]

    def in_language(lang: str) -> str:
        return urlunsplit(address._replace(query=urlencode([*query, ("lang", lang)])))

    for lang in ("zh", "en"):
        page.goto(in_language(lang))
        for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(viewport)
            path = SHOTS / f"{name}-{lang}-{size}.png"
            page.screenshot(path=str(path), full_page=True)
            saved.append(path)
    page.set_viewport_size(DESKTOP)
    page.goto(in_language("zh"))
    return saved
