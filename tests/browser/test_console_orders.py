"""Orders, revenue, alarms, the operation log and users in Chromium, on an API with real payment channels
(WeChat Pay and Alipay played on loopback, tests/payment_fakes.py).

A driver tops up through WeChat Pay; two sessions are settled through the Ledger's use cases (the
browser fixture runs the API on the same in-process Ledger, as the integration tests settle). The
tenant admin finds the order in the list and through its filters, its timeline and bill show the
amount the reference pricer (``domain.pricing.price``) gives, the revenue chart is drawn and its
data attribute adds up to the bills, a refund reaches the payment platform, a refund form without
its CSRF token is refused; an alarm is acknowledged; an agent created on the users page sees only
its station's orders; another tenant's admin gets 404 for the order.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from playwright.sync_api import Page, expect

from adapters.api.auth import TENANT_ADMIN
from adapters.api.driver.settings import DriverApiSettings
from adapters.payments.config import SecretBox
from domain.ledger import Ledger
from domain.pricing import price
from domain.tariff import TariffSchedule
from domain.wallet import Wallet
from tests.browser.conftest import Console, screenshots
from tests.browser.test_console_auth import sign_in
from tests.browser.test_console_tariffs import shown_after_reloads
from tests.console import operator_user
from tests.e2e.test_projections import build_tenant, charge
from tests.factories import PRICES, SLOTS, record
from tests.payment_fakes import PayWorld

KEYS = SecretBox.generate_setting("k1")
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai
EAST, WEST = (2000, 30000, 50000, 0), (0, 0, 12345, 6789)  # energy per tier, 0.0001 kWh


@pytest.fixture
def payment_keys() -> str:
    return KEYS  # the channels of `world` open under the API's keys


@pytest.fixture
def console_options(world: PayWorld) -> dict[str, Any]:
    return {"driver": DriverApiSettings(KEYS, "https://charge.example.com", wechat_api=world.wechat.url,
                                        gateways={"wechat": world.wechat.url, "alipay": world.alipay.gateway})}


def settled(ledger: Ledger, pile_no: str, wallet: UUID, at: datetime, tier_energy: tuple[int, ...]) -> str:
    """A session a pile charged and settled: start, charging, readings, stop, the pile's record."""
    ledger.pile_connected(pile_no, at - timedelta(minutes=5), "gw-1", 0x16, "V2.1.3")
    ledger.report_gun(pile_no, 1, "idle", True, {}, at - timedelta(minutes=1))
    trade = charge(ledger, pile_no, 1, wallet, at, minutes=5, per_minute=sum(tier_energy) // 5)
    ledger.request_stop(trade, "driver", "driver stopped", at + timedelta(minutes=6))
    ledger.settle(trade, record(tier_energy, at, 6), at + timedelta(minutes=7))  # type: ignore[arg-type]
    return trade


def test_an_order_its_bill_revenue_refund_alarm_and_an_agent_in_the_browser(page: Page, console: Console,
                                                                             world: PayWorld) -> None:
    ledger, tenant = console.ledger, world.tenant_id
    east = ledger.create_station(tenant, "东站 East", "1 Road", 31.2, 121.5, "ops")
    west = ledger.create_station(tenant, "西站 West", "2 Road", 31.3, 121.4, "ops")
    piles = {east: "32010600030001", west: "32010600030002"}
    tariff = ledger.create_tariff(tenant, "standard", PRICES, SLOTS, "ops")
    for station, pile_no in piles.items():
        ledger.register_pile(station, pile_no, "DC", 2, "ops")
        ledger.assign_tariff(tariff, "ops", station_id=station)
    payer = world.wechat_payer()
    top_up = world.service.create_top_up(payer, 100_00)  # the driver pays through WeChat Pay
    assert world.service.handle_notification("wechat", tenant, "wx-main",
                                              *world.wechat.payment_notification(top_up.out_trade_no)).outcome == "credited"
    wallet = Wallet.create_id(tenant, payer.driver_id)
    trade = settled(ledger, piles[east], wallet, T0, EAST)
    other = settled(ledger, piles[west], wallet, T0 + timedelta(hours=1), WEST)
    schedule = TariffSchedule.build(PRICES, SLOTS)
    bill, other_bill = price(EAST, schedule), price(WEST, schedule)  # the reference pricer
    assert bill.total_fen == 10_36
    operator_user(console.app, "pay-admin", TENANT_ADMIN, tenant)

    # ---- the list, its filters, the CSV ------------------------------------------------------------
    page.goto(console.url("/console/login?next=/console/orders"))
    sign_in(page, console, "pay-admin")
    shown_after_reloads(page, f"tr[data-trade='{other}']")
    expect(page.locator("table.orders tbody tr")).to_have_count(2)
    expect(page.locator(f"tr[data-trade='{trade}'] td.amount")).to_have_text("10.36")
    page.select_option("select[name=station]", str(east))
    page.select_option("select[name=state]", "finished")
    page.fill("input[name=from]", "2026-11-22")
    page.fill("input[name=to]", "2026-11-22")
    page.click("form.filters button[type=submit]")
    expect(page.locator("table.orders tbody tr")).to_have_count(1)
    expect(page.locator("table.orders tbody tr")).to_have_attribute("data-trade", trade)
    screenshots(page, "orders")
    with page.expect_download() as download:
        page.click("text=导出 CSV")
    text = open(download.value.path(), encoding="utf-8").read()
    assert trade in text and ",10.36," in text and other not in text  # the same filters
    page.goto(console.url(f"/console/orders?trade_no={other}"))
    expect(page.locator("table.orders tbody tr")).to_have_attribute("data-trade", other)
    page.goto(console.url("/console/orders?from=2026-11-23"))
    expect(page.locator(".empty")).to_have_text("没有符合条件的订单。")

    # ---- one order: timeline and bill ------------------------------------------------------------------
    page.goto(console.url("/console/orders"))
    page.click(f"a:has-text('{trade}')")
    expect(page.locator("h1")).to_contain_text(trade)
    expect(page.locator(".bill-total")).to_have_attribute("data-fen", str(bill.total_fen))
    expect(page.locator(".bill-total")).to_have_text("¥ 10.36")
    expect(page.locator("dd.amount")).to_have_attribute("data-total-fen", str(bill.total_fen))
    steps = page.locator("ol.timeline li").evaluate_all("items => items.map(i => i.dataset.step)")
    assert steps == ["ordered", "record_started", "requested", "started", "readings", "stop_requested", "stopped", "settled",
                     "captured", "released"], steps
    expect(page.locator("li[data-step=settled] .amount")).to_have_text("¥ 10.36")
    expect(page.locator("li[data-step=captured] .amount")).to_have_text("¥ 10.36")
    expect(page.locator("li[data-step=released] .amount")).to_have_text("¥ 39.64")
    expect(page.locator("table.bill tr[data-tier=peak] td").nth(3)).to_have_text("3.00")  # 3 kWh × 1.00 yuan
    screenshots(page, "order")

    # ---- a refund without its CSRF token is refused; with it, it reaches WeChat Pay --------------------
    world.wechat.refund_answer = (200, "SUCCESS")
    page.fill("input[name=amount]", "20.00")
    page.fill("input[name=reason]", "充电枪故障补偿")
    page.eval_on_selector("form.refund input[name=csrf]", "e => e.remove()")
    page.click("form.refund button[type=submit]")
    expect(page.locator("h1")).to_have_text("请求已拒绝")
    assert ledger.wallet(wallet).available == 100_00 - bill.total_fen - other_bill.total_fen
    assert world.wechat.refunds == {}
    page.goto(console.url(f"/console/orders/{trade}"))
    page.fill("input[name=amount]", "20.00")
    page.fill("input[name=reason]", "充电枪故障补偿")
    page.click("form.refund button[type=submit]")
    expect(page.locator(".notice")).to_have_text("退款已提交。")
    expect(page.locator("li[data-step=refund]")).to_contain_text("¥ 20.00")
    expect(page.locator("li[data-step=refund]")).to_contain_text("已退款")
    expect(page.locator("li[data-step=refund]")).to_contain_text("充电枪故障补偿")
    [sent] = world.wechat.refunds.values()
    assert sent["amount"]["refund"] == 20_00 and sent["reason"] == "充电枪故障补偿"
    assert ledger.wallet(wallet).available == 100_00 - bill.total_fen - other_bill.total_fen - 20_00
    page.reload()  # the same form again (the page's next request number): a new refund, not the old one
    expect(page.locator("input[name=attempt]")).to_have_value("2")

    # ---- revenue: the chart is drawn and adds up to the bills --------------------------------------------
    page.goto(console.url("/console/revenue"))
    expect(page.locator("#chart-days canvas")).to_have_count(1)
    expect(page.locator("#chart-stations canvas")).to_have_count(1)
    expect(page.locator("#chart-days")).to_have_attribute("data-drawn", "yes")
    assert int(page.locator("#chart-days").get_attribute("data-total-fen") or "") == (
        bill.total_fen + other_bill.total_fen)
    page.goto(console.url(f"/console/revenue?station={east}"))
    expect(page.locator("#chart-days")).to_have_attribute("data-total-fen", str(bill.total_fen))
    expect(page.locator("#chart-days canvas")).to_have_count(1)
    page.goto(console.url("/console/revenue"))
    screenshots(page, "revenue")

    # ---- an alarm, acknowledged ------------------------------------------------------------------------
    ledger.report_gun(piles[west], 2, "fault", False, {"0x02": "emergency stop pressed"}, T0 + timedelta(hours=2))
    page.goto(console.url("/console/alarms?kind=fault"))
    shown_after_reloads(page, "table.alarms tbody tr")
    row = page.locator("table.alarms tbody tr").first
    row.locator("input[name=note]").fill("已派维修")
    row.locator("button").click()
    expect(page.locator(".notice")).to_have_text("告警已确认。")
    expect(page.locator("table.alarms tbody tr .acked").first).to_have_text("pay-admin 已确认")
    screenshots(page, "alarms")
    page.goto(console.url("/console/operation-log"))
    shown_after_reloads(page, "tr[data-event='ChargingSession.StopRequested']")
    screenshots(page, "operation-log")

    # ---- an agent with one station, created on the users page ------------------------------------------
    page.goto(console.url("/console/users"))
    page.fill("input[name=username]", "agent-east")
    page.fill("input[name=password]", "agent passphrase 1")
    page.check(f"input[name=station-{east}]")
    page.click("section.new-agent button[type=submit]")
    expect(page.locator(".notice")).to_have_text("已创建用户 agent-east。")
    expect(page.locator("tr[data-user=agent-east]")).to_contain_text("东站 East")
    screenshots(page, "users")
    page.click("text=退出登录")
    page.goto(console.url("/console/login?next=/console/orders"))
    page.fill("input[name=username]", "agent-east")
    page.fill("input[name=password]", "agent passphrase 1")
    page.click("main button[type=submit]")
    expect(page.locator("table.orders tbody tr")).to_have_count(1)
    expect(page.locator("table.orders tbody tr")).to_have_attribute("data-trade", trade)
    answer = page.goto(console.url(f"/console/orders/{other}"))
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("页面不存在")
    page.goto(console.url("/console/revenue"))
    expect(page.locator("#chart-days")).to_have_attribute("data-total-fen", str(bill.total_fen))
    expect(page.locator("form.refund")).to_have_count(0)
    answer = page.goto(console.url("/console/users"))
    assert answer is not None and answer.status == 403


def test_tenant_b_gets_404_for_tenant_a_order(page: Page, console: Console) -> None:
    a = build_tenant(console.ledger, "Alpha", "3201060001", "ops")
    b = build_tenant(console.ledger, "Beta", "3201060002", "ops")
    trade = settled(console.ledger, a.piles[0], a.wallets["li"], T0, EAST)
    operator_user(console.app, "beta-admin", TENANT_ADMIN, b.tenant_id)
    page.goto(console.url("/console/login?next=/console/orders"))
    sign_in(page, console, "beta-admin")
    expect(page.locator("h1")).to_have_text("充电订单")
    answer = page.goto(console.url(f"/console/orders/{trade}"))
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("页面不存在")
    page.goto(console.url(f"/console/orders?trade_no={trade}"))
    expect(page.locator(".empty")).to_have_text("没有符合条件的订单。")
    answer = page.goto(console.url(f"/console/tariffs/{a.tariff_id}"))
    assert answer is not None and answer.status == 404
