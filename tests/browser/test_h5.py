"""The driver H5 page in Chromium at a phone's size: sign in through the WeChat fake's login code, top up
(WeChat Pay's signed notification, played by the fake), open the gun from its QR link, start, watch the
amount grow while a simulated YKC pile charges through the gateway, stop, and read a bill that is the
reference pricer's; another driver gets a 404 for that session; a form without its CSRF token is refused."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

import httpx
from playwright.sync_api import Page, expect

from domain.pricing import price
from domain.tariff import TIERS
from tests.browser.charging import ChargingConsole, console, payment_keys  # noqa: F401  (fixtures)
from tests.browser.conftest import PHONE, screenshots
from tests.factories import PRICES
from tests.integration.driver_app import PILE
from tests.integration.driver_app import world as world  # noqa: F401  (a station, its piles, a tariff)
from tests.payment_fakes import PayWorld

H5 = "/console/h5"


def sign_in(page: Page, console: ChargingConsole, openid: str, target: str) -> None:  # noqa: F811
    """What the mini-program's web-view does: open the H5 login with a fresh wx.login code; the driver taps."""
    world = console.world
    assert world is not None
    code, _ = world.wechat.login_code(openid)
    page.goto(console.url(f"{H5}/login/wechat/{world.tenant_id}/wx-main?code={code}&next={target}"))
    page.click("button.primary")
    expect(page).to_have_url(console.url(target))


def shown(page: Page, url: str, selector: str, text: str, tries: int = 100) -> None:
    """Load ``url`` until ``selector`` shows ``text`` (a page that reads a view the projections are catching up on)."""
    for _ in range(tries):
        page.goto(url)
        found = page.locator(selector)
        if found.count() and found.first.inner_text().strip() == text:
            return
        page.wait_for_timeout(200)
    expect(page.locator(selector)).to_have_text(text)


def yuan(text: str) -> int:
    """'¥ 1,234.56' -> fen."""
    whole, _, cents = text.replace("¥", "").replace(",", "").strip().partition(".")
    return int(whole) * 100 + int(cents)


def reference_fen(tier_energy: list[int]) -> tuple[int, int]:
    """Written here: kWh × yuan/kWh in Decimal, each fee rounded half up once (electricity, service)."""
    fees = []
    for kind in ("electricity", "service"):
        fee = sum(Decimal(e) / 10000 * Decimal(PRICES[t][kind]) / 100000 for e, t in zip(tier_energy, TIERS))
        fees.append(int(fee.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * 100))
    return fees[0], fees[1]


def test_a_driver_tops_up_starts_watches_the_amount_grow_and_stops(console: ChargingConsole,  # noqa: F811
                                                                   page: Page) -> None:
    world: PayWorld = console.world  # type: ignore[assignment]
    page.set_viewport_size(PHONE)
    fleet = console.piles(PILE)
    console.event(fleet, "model_received", pile=PILE)
    gun = f"{H5}/c/{PILE}01"
    sign_in(page, console, "o-li", gun)
    expect(page.locator("h1")).to_have_text("Riverside")
    expect(page.locator(".period.now .tier")).to_have_count(1)
    screenshots(page, "h5-gun-empty")

    page.click("text=充值")  # the wallet: top up 60 yuan through WeChat Pay
    page.fill("form.top-up input[name=amount]", "60")
    page.click("form.top-up button")
    expect(page.locator("#top-up-state")).to_have_attribute("data-state", "prepared")
    out_trade_no = page.url.rsplit("/", 1)[1]
    headers, body = world.wechat.payment_notification(out_trade_no)  # WeChat Pay calls our callback, signed
    paid = httpx.post(console.url(f"/pay/wechat/notify/{world.tenant_id}/wx-main"), content=body,
                      headers={**headers, "Content-Type": "application/json"})
    assert paid.status_code == 204, paid.text
    expect(page.locator("#top-up-state")).to_have_attribute("data-state", "credited")  # without a reload
    expect(page.locator('#top-up-state [data-figure="available"]')).to_have_text("¥ 60.00")

    page.goto(console.url(gun))
    for _ in range(100):  # the pile's gun report reaches the ledger behind its login (write-behind)
        if page.locator("button.start").is_enabled():
            break
        page.wait_for_timeout(200)
        page.goto(console.url(gun))
    screenshots(page, "h5-gun")
    page.click("button.start")
    expect(page).to_have_url(re.compile(re.escape(console.url(f"{H5}/sessions/")) + r"\d{32}$"))
    session_url = page.url
    trade_no = session_url.rsplit("/", 1)[1]
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("#session")).to_have_attribute("data-state", "charging")
    amount = page.locator('[data-figure="amount"]')
    expect(amount).not_to_have_text("¥ 0.00")
    first = amount.inner_text()
    expect(amount).not_to_have_text(first)  # the stream brings the next reading
    assert yuan(amount.inner_text()) > yuan(first) > 0
    assert page.locator('[data-figure="soc"]').inner_text() != "—"
    assert page.locator('[data-figure="power"]').inner_text() != "—"
    assert page.evaluate("window.__notReloaded") is True
    screenshots(page, "h5-charging")

    page.click("button.stop")
    expect(page.locator("#session")).to_have_attribute("data-state", "finished", timeout=60_000)
    session = console.ledger.session(trade_no)
    tier_energy = list(session.record["tier_energy"])
    bill = price(tier_energy, session.schedule)
    assert (bill.electricity_fen, bill.service_fen) == reference_fen(tier_energy)
    assert yuan(page.locator('[data-figure="total"]').inner_text()) == bill.total_fen
    assert yuan(page.locator('[data-figure="electricity"]').inner_text()) == bill.electricity_fen
    assert yuan(page.locator('[data-figure="service"]').inner_text()) == bill.service_fen
    rows = page.locator("table.bill tbody tr")
    charged = [(t.tier, t.energy) for t in bill.tiers if t.energy]
    expect(rows).to_have_count(len(charged))
    for i, (tier, energy) in enumerate(charged):
        expect(rows.nth(i)).to_have_attribute("data-tier", tier)
        expect(rows.nth(i).locator("td").nth(1)).to_have_text(f"{energy // 10000}.{energy % 10000:04d}")
    screenshots(page, "h5-bill")
    left = 6000 - bill.total_fen
    shown(page, console.url(f"{H5}/wallet"), '.balance [data-figure="available"]', f"¥ {left // 100}.{left % 100:02d}")
    shown(page, console.url(f"{H5}/history"), f'[data-trade="{trade_no}"] .total',
          f"¥ {bill.total_fen // 100}.{bill.total_fen % 100:02d}")  # the orders view has caught up
    screenshots(page, "h5-history")

    page.context.clear_cookies()  # another driver, on the same phone
    sign_in(page, console, "o-wang", f"{H5}/wallet")
    answer = page.goto(session_url)
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("页面不存在")
    page.goto(console.url(f"{H5}/wallet"))
    page.fill("form.top-up input[name=amount]", "10")
    page.eval_on_selector("form.top-up input[name=csrf]", "e => e.remove()")  # what a form on another site lacks
    page.click("form.top-up button")
    expect(page.locator("h1")).to_have_text("请求已拒绝")
    assert world.wechat.orders and len(world.wechat.orders) == 1  # only li's top-up reached WeChat Pay
