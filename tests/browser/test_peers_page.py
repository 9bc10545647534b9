"""互联互通 (Peers) in Chromium: a tenant with two T/CEC peers, B (infrastructure: A's driver charges on its
piles through A's Ledger: one order settled yesterday, one refused, one charging) and C (customer: a push
to it failed once and waits for its next attempt, ten minutes owed).

The tenant admin finds the page in the navigation, reads C's link as retrying with its error and lag and
B's settlement for yesterday (the order's 18.01 yuan payable), opens B and pages through its orders two at
a time; an agent of the same tenant has no link to it and gets the 403 page when it goes there anyway.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import Page, expect

from adapters.api.auth import AGENT, TENANT_ADMIN
from adapters.interconnect.store.directory import Store
from adapters.interconnect.store.outbox import Push
from adapters.interconnect.store.schema import create_schema
from adapters.interconnect.tcec.envelope import SHANGHAI
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.models.codes import ConnectorStatus
from adapters.interconnect.tcec.models.status import ConnectorStatusInfo, StationStatusNotification
from adapters.payments.config import SecretBox
from adapters.web.pages import peers as peers_page
from tests.browser.conftest import Console, screenshots
from tests.browser.test_console_auth import sign_in
from tests.browser.test_console_tariffs import shown_after_reloads
from tests.console import operator_user
from tests.factories import World, build_world

B, C, A = "BPLATFORM", "CPLATFORM", "APLATFORM"


def linked(console: Console, world: World) -> Store:
    """The interconnect's tables on the console's database, B and C configured for ``world``'s tenant."""
    create_schema(console.app.state.pool)
    store = Store(console.app.state.pool, SecretBox.from_setting(SecretBox.generate_setting("k1")))
    store.peers.configure(world.tenant_id, B, our_operator_id=A, base_url="https://b.example.com/evcs/v1",
                          role=Role.INFRASTRUCTURE, name="平台B")
    c = store.peers.configure(world.tenant_id, C, our_operator_id=A, base_url="https://c.example.com/evcs/v1",
                              role=Role.CUSTOMER, name="平台C")
    now = datetime.now(timezone.utc)
    status = StationStatusNotification(ConnectorStatusInfo=ConnectorStatusInfo(ConnectorID="3201060001923601",
                                                                                Status=ConnectorStatus.IDLE))
    store.outbox.enqueue(c.peer_id, Push("notification_stationStatus", "status:1", status), now - timedelta(minutes=10))
    (row,) = store.outbox.take(now, 10)
    store.outbox.failed(row.id, "ConnectError: connection refused", now + timedelta(minutes=5))
    return store


def roamed(console: Console, world: World) -> datetime:
    """A's driver on B's piles, 30 yuan held each: settled yesterday (18.01 yuan), refused, charging.
    Returns the settled order's EndTime."""
    ledger, t0 = console.ledger, datetime.now(timezone.utc) - timedelta(days=1)
    charges = [ledger.start_roaming(tenant_id=world.tenant_id, wallet_id=world.wallet_id, peer=B,
                                    connector_id="9900000000000101", station_id="", start_charge_seq=f"{A}{n:018d}",
                                    hold_fen=30_00, at=t0, author="driver:driver-1") for n in (1, 2, 3)]
    ledger.roaming_charging(charges[0].id, at=t0, start_time=t0)
    end = t0 + timedelta(minutes=55)
    ledger.settle_roaming(charges[0].id, at=t0 + timedelta(hours=1), energy=123_456, electricity_fen=1_234,
                          service_fen=567, start_time=t0, end_time=end, stop_reason=0)
    ledger.roaming_failed(charges[1].id, at=t0, reason="the peer refused the start")
    ledger.roaming_charging(charges[2].id, at=t0, start_time=t0)
    return end


def test_a_tenant_admin_reads_each_links_health_the_settlement_and_a_peers_orders_an_agent_may_not(
        page: Page, console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers_page, "PAGE", 2)  # three orders: two pages
    world = build_world(console.ledger)
    linked(console, world)
    ended = roamed(console, world)
    operator_user(console.app, "alpha-admin", TENANT_ADMIN, world.tenant_id)
    operator_user(console.app, "alpha-agent", AGENT, world.tenant_id, [world.station_id])

    page.goto(console.url("/console/login?next=/console/"))
    sign_in(page, console, "alpha-admin")
    page.click("nav.nav >> text=互联互通")
    expect(page.locator("h1")).to_have_text("互联互通")
    c = page.locator("tr[data-peer=CPLATFORM]")
    expect(c.locator("[data-health=pending]")).to_have_text("1")
    expect(c.locator("[data-health=retrying]")).to_have_text("1")
    expect(c.locator("[data-health=failed]")).to_have_text("0")
    expect(c.locator("[data-health=last_error]")).to_have_text("ConnectError: connection refused")
    expect(c.locator("[data-health=lag]")).to_contain_text("10 min")
    expect(c.locator("[data-health=role]")).to_contain_text("客户平台")
    b = page.locator("tr[data-peer=BPLATFORM]:not([data-day])")
    expect(b.locator("[data-health=pending]")).to_have_text("0")
    expect(b.locator("[data-health=last_error]")).to_have_text("—")
    day = f"tr[data-peer=BPLATFORM][data-day='{ended.astimezone(SHANGHAI).date().isoformat()}']"
    shown_after_reloads(page, day)  # the roaming_orders view has caught up with the ledger
    expect(page.locator(f"{day} [data-figure=payable-total]")).to_have_text("18.01")
    expect(page.locator(f"{day} [data-figure=payable-energy]")).to_have_text("12.3456")
    expect(page.locator(f"{day} [data-figure=receivable-orders]")).to_have_text("0")
    screenshots(page, "peers")

    page.click("table.peers >> text=平台B")
    expect(page.locator("h1")).to_contain_text("平台B")
    rows = page.locator("table.peer-orders tbody tr")
    expect(rows).to_have_count(2)
    assert [rows.nth(i).get_attribute("data-seq") for i in range(2)] == [f"{A}{3:018d}", f"{A}{2:018d}"]
    expect(rows.nth(1)).to_have_attribute("data-state", "failed")
    screenshots(page, "peer")
    page.click("a[rel=next]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-seq", f"{A}{1:018d}")
    expect(rows.first).to_contain_text("18.01")
    expect(rows.first.locator(".state")).to_have_text("已结算")
    expect(page.locator("a[rel=next]")).to_have_count(0)
    page.click(".pager >> text=第一页")
    expect(rows).to_have_count(2)

    page.click("text=退出登录")
    page.goto(console.url("/console/login?next=/console/"))
    sign_in(page, console, "alpha-agent")
    expect(page.locator("nav.nav a[href='/console/orders']")).to_have_count(1)
    expect(page.locator("nav.nav a[href='/console/peers']")).to_have_count(0)
    for path in ("/console/peers", f"/console/peers/{B}"):
        answer = page.goto(console.url(path))
        assert answer is not None and answer.status == 403
        expect(page.locator("h1")).to_have_text("无权操作")
        expect(page.locator("main")).not_to_contain_text("平台B")
