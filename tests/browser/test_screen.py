"""The 经营大屏 in Chromium: its counts, power and money move without a reload while a simulated YKC pile
logs in through the gateway, charges and settles; the bill it adds is the reference pricer's; an agent's
screen shows its stations only; another tenant's screen is a 404 page."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from playwright.sync_api import Page, expect

from adapters.api.auth import AGENT, TENANT_ADMIN
from domain.pricing import price
from domain.tariff import TIERS
from tests.browser.charging import ChargingConsole, console, payment_keys  # noqa: F401  (fixtures)
from tests.browser.conftest import screenshots
from tests.browser.test_console_auth import sign_in
from tests.console import operator_user
from tests.e2e.test_projections import build_tenant
from tests.factories import PRICES


def tile(page: Page, name: str) -> object:
    return page.locator(f'[data-figure="{name}"] .figure')


def period(page: Page, name: str) -> object:
    return page.locator(f'[data-figure="{name}"] b')


def reference_yuan(tier_energy: list[int]) -> str:
    """Written here: kWh × yuan/kWh in Decimal per fee, each rounded half up once, summed."""
    total = Decimal(0)
    for kind in ("electricity", "service"):
        fee = sum(Decimal(e) / 10000 * Decimal(PRICES[t][kind]) / 100000 for e, t in zip(tier_energy, TIERS))
        total += fee.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{total:,.2f}"


def test_the_screen_moves_while_a_simulated_pile_charges(console: ChargingConsole, page: Page) -> None:  # noqa: F811 (console first: its NATS set-up runs before Playwright's loop)
    a = build_tenant(console.ledger, "Alpha", "3201060001", "ops")
    operator_user(console.app, "alpha-admin", TENANT_ADMIN, a.tenant_id)
    page.goto(console.url("/console/login?next=%2Fconsole%2Fscreen"))
    sign_in(page, console, "alpha-admin")
    expect(page).to_have_url(console.url("/console/screen"))
    expect(tile(page, "online")).to_have_text("0")
    expect(tile(page, "charging")).to_have_text("0")
    expect(period(page, "energy-today")).to_have_text("0.0")
    page.evaluate("window.__notReloaded = true")  # gone if the page ever reloads

    fleet = console.piles(a.piles[0])  # a YKC pile logs in through the gateway
    expect(tile(page, "online")).to_have_text("1")
    expect(tile(page, "offline")).to_have_text("1")
    console.event(fleet, "model_received", pile=a.piles[0])

    trade_no = console.ledger.request_start(pile_no=a.piles[0], gun_no=1, wallet_id=a.wallets["li"], hold_fen=50_00,
                                            at=datetime.now(UTC), author="li")  # what the driver API's start runs
    console.event(fleet, "charging_started", pile=a.piles[0], trade_no=trade_no)
    expect(tile(page, "charging")).to_have_text("1")
    expect(tile(page, "power")).not_to_have_text("0.0")
    chart = page.locator("#power-chart")
    expect(chart.locator("canvas")).to_have_count(1)  # ECharts drew, under the CSP
    deadline = datetime.now(UTC).timestamp() + 20
    while not any(json.loads(chart.get_attribute("data-power") or "{}").get("kw", [0])[-1:]):
        assert datetime.now(UTC).timestamp() < deadline, "the power curve did not move"
        page.wait_for_timeout(200)
    screenshots(page, "screen-charging")  # (reloads in each language: the live checks are above)
    page.evaluate("window.__notReloaded = true")

    console.ledger.request_stop(trade_no, "li", "stopped by driver", datetime.now(UTC))
    console.event(fleet, "record_confirmed", pile=a.piles[0], trade_no=trade_no)
    session = console.ledger.session(trade_no)
    tier_energy = list(session.record["tier_energy"])
    bill = price(tier_energy, session.schedule)
    energy = bill.energy
    expect(period(page, "energy-today")).to_have_text(f"{energy // 10000:,}.{energy % 10000 // 1000}")
    expect(period(page, "revenue-today")).to_have_text(reference_yuan(tier_energy))
    assert f"{bill.total_fen // 100:,}.{bill.total_fen % 100:02d}" == reference_yuan(tier_energy)  # the ledger's pricer agrees
    expect(period(page, "sessions-today")).to_have_text("1")
    expect(tile(page, "charging")).to_have_text("0")
    expect(page.locator(".ranking li").first).to_contain_text("Alpha East")
    assert page.evaluate("window.__notReloaded") is True  # all of it without a reload


def test_an_agent_sees_its_stations_and_another_tenant_gets_a_404(console: ChargingConsole, page: Page) -> None:  # noqa: F811 (console first: its NATS set-up runs before Playwright's loop)
    a = build_tenant(console.ledger, "Alpha", "3201060001", "ops")
    b = build_tenant(console.ledger, "Beta", "3201060002", "ops")
    operator_user(console.app, "alpha-agent", AGENT, a.tenant_id, [a.stations[1]])
    operator_user(console.app, "beta-admin", TENANT_ADMIN, b.tenant_id)
    page.goto(console.url("/console/login?next=%2Fconsole%2Fscreen"))
    sign_in(page, console, "alpha-agent")
    expect(tile(page, "offline")).to_have_text("1")  # one pile: the agent's station's
    expect(page.locator(".ranking li")).to_have_count(1)
    expect(page.locator(".ranking li")).to_contain_text("Alpha West")
    screenshots(page, "screen-agent")
    page.goto("about:blank")  # close the live stream first: its reconnect without a cookie gets the sign-in page
    page.context.clear_cookies()
    page.goto(console.url("/console/login"))
    sign_in(page, console, "beta-admin")
    answer = page.goto(console.url(f"/console/screen?tenant={a.tenant_id}"))
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("页面不存在")
