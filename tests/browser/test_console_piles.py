"""Stations and piles in Chromium: a tenant admin creates a station and a pile through the forms (a
refused field shown at the field first); a simulated YKC pile logs in over TCP to a real gateway and
its row on the piles page turns online, its gun idle, without a reload (htmx's SSE extension)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Page, expect

from adapters.api.auth import AGENT, TENANT_ADMIN
from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from pile_link.gateway import Gateway
from tests.browser.conftest import WAIT_MS, Console, screenshots
from tests.browser.test_console_auth import sign_in
from tests.console import operator_user
from tests.e2e.test_projections import build_tenant
from tests.ykc_pile import ScriptedPile

IDLE = 2  # the 0x13 gun status byte


def test_a_tenant_admin_creates_a_station_and_a_pile_through_the_forms(page: Page, console: Console) -> None:
    a = build_tenant(console.ledger, "Alpha", "3201060001", "ops")
    operator_user(console.app, "alpha-admin", TENANT_ADMIN, a.tenant_id)
    page.goto(console.url("/console/login"))
    sign_in(page, console, "alpha-admin")
    page.goto(console.url("/console/stations"))
    screenshots(page, "stations")
    page.click("text=新建站点")
    screenshots(page, "station-new")
    page.fill("input[name=name]", "张江充电站")
    page.fill("input[name=address]", "上海市浦东新区科苑路88号")
    page.fill("input[name=latitude]", "95")  # out of range: the API's model refuses it
    page.fill("input[name=longitude]", "121.5907")
    page.click("main button[type=submit]")
    expect(page.locator("#latitude-error")).to_be_visible()
    expect(page.locator("input[name=name]")).to_have_value("张江充电站")
    page.fill("input[name=latitude]", "31.2036")
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("张江充电站")

    page.click("text=添加充电桩")
    page.fill("input[name=pile_no]", "32010600019999")
    page.select_option("select[name=kind]", "DC")
    page.fill("input[name=gun_count]", "2")
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("张江充电站")
    reload_until(page, "#pile-32010600019999")  # the live view catches up with the new pile within a moment
    screenshots(page, "station")
    page.goto(console.url("/console/stations"))
    expect(page.locator("table.grid tbody tr")).to_have_count(3)
    expect(page.locator("tr", has_text="张江充电站").locator("td.num")).to_have_text("1")


def reload_until(page: Page, selector: str) -> None:
    """Reload the page until ``selector`` shows (a view catching up), within the browser tests' wait."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not page.locator(selector).count():
        assert time.monotonic() < deadline, f"{selector} did not appear"
        page.wait_for_timeout(200)
        page.reload()


@contextmanager
def pile_logged_in(database_url: str, nats_url: str, pile_no: str) -> Iterator[None]:
    """A real gateway (its own Ledger, as its own process would have) and a scripted YKC pile that logs in
    and reports gun 1 idle; both run in a thread until the block ends."""
    ready, stop, failures = threading.Event(), threading.Event(), []

    async def main() -> None:
        ledger = Ledger(eventsourcing_env(database_url))
        gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, sweep_interval=3600, watchdog=False)
        await gateway.start()
        pile = ScriptedPile(pile_no)
        try:
            await pile.login(gateway.port)
            pile.send(pile.realtime(1, status=IDLE, plugged=0))
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
        finally:
            await pile.close()
            await gateway.stop()
            ledger.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            failures.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="gateway", daemon=True)
    thread.start()
    assert ready.wait(30), "the pile did not log in"
    assert not failures, failures
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
        assert not failures, failures


def test_a_pile_that_logs_in_turns_online_on_the_page_without_a_reload(nats_url: str, database_url: str,
                                                                      page: Page, console: Console) -> None:
    # nats_url first: its fixture runs asyncio, which it cannot once Playwright's loop runs in this thread
    a = build_tenant(console.ledger, "Alpha", "3201060001", "ops")
    operator_user(console.app, "alpha-agent", AGENT, a.tenant_id, [a.stations[0]])
    page.goto(console.url("/console/login"))
    sign_in(page, console, "alpha-agent")
    page.goto(console.url("/console/piles"))
    row = page.locator(f"#pile-{a.piles[0]}")
    expect(row).to_have_attribute("data-online", "no")
    expect(page.locator("table.grid tbody tr")).to_have_count(1)  # the agent's one station's pile only
    page.evaluate("document.body.dataset.sameDocument = 'yes'")  # gone if the page were loaded again

    with pile_logged_in(database_url, nats_url, a.piles[0]):
        expect(row).to_have_attribute("data-online", "yes")
        expect(row.locator(".status.online")).to_have_text("在线")
        expect(row.locator("[data-gun='1']")).to_have_attribute("data-status", "idle")
        assert page.evaluate("document.body.dataset.sameDocument") == "yes"
        screenshots(page, "piles")
