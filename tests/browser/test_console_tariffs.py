"""The tariff editor in Chromium: a tenant admin paints the 48 slots with the brushes (Alpine), types the
prices, gets a refused price back at its field, corrects it and saves; the ledger holds exactly what
was painted and typed. Without script (Alpine not loaded) the same form still posts its 48 slots."""

from __future__ import annotations

from uuid import UUID

from playwright.sync_api import Page, expect

from adapters.api.auth import TENANT_ADMIN
from domain.tariff import TIERS
from tests.browser.conftest import SHOTS, Console, screenshots
from tests.browser.test_console_auth import sign_in
from tests.console import operator_user
from tests.e2e.test_projections import build_tenant

PRICES = {"sharp": ("1.2", "0.8"), "peak": ("1.0", "0.8"), "flat": ("0.7", "0.6"), "valley": ("0.35", "0.4")}


def shown_after_reloads(page: Page, selector: str, reloads: int = 150) -> None:
    """Reload until ``selector`` is on the page: what a page reads from a view shows once the view has
    caught up with the ledger (the projections run beside the server)."""
    for _ in range(reloads):
        if page.locator(selector).count():
            return
        page.wait_for_timeout(100)
        page.reload()
    raise AssertionError(f"{selector} never appeared")


def fill_prices(page: Page, prices: dict[str, tuple[str, str]]) -> None:
    for tier, (electricity, service) in prices.items():
        page.fill(f"input[name=price-{tier}-electricity]", electricity)
        page.fill(f"input[name=price-{tier}-service]", service)


def slot(page: Page, i: int) -> str:
    return f"li.slot[data-slot='{i}']"


def drag(page: Page, first: int, last: int) -> None:
    """Press on one slot's time label and move over to another's, as an operator paints a run."""
    start = page.locator(f"{slot(page, first)} .time").bounding_box()
    end = page.locator(f"{slot(page, last)} .time").bounding_box()
    assert start and end
    page.mouse.move(start["x"] + 5, start["y"] + 5)
    page.mouse.down()
    for i in range(first, last + 1):
        box = page.locator(f"{slot(page, i)} .time").bounding_box()
        assert box
        page.mouse.move(box["x"] + 5, box["y"] + 5, steps=3)
    page.mouse.up()


def test_a_tenant_admin_paints_a_tariff_sees_a_refused_price_at_its_field_and_saves(page: Page,
                                                                                     console: Console) -> None:
    a = build_tenant(console.ledger, "Alpha", "3201060001", "ops")
    operator_user(console.app, "alpha-admin", TENANT_ADMIN, a.tenant_id)
    page.goto(console.url("/console/login?next=/console/tariffs"))
    sign_in(page, console, "alpha-admin")
    expect(page.locator("h1")).to_have_text("计费规则")
    page.click("text=新建计费规则")
    expect(page.locator("fieldset.strip-editor.live")).to_be_visible()  # Alpine's component is running
    expect(page.locator(".strip-totals .tier-flat b")).to_have_text("24")  # a new tariff starts all flat
    screenshots(page, "tariff-editor")

    page.fill("input[name=name]", "峰谷 2027")
    fill_prices(page, {**PRICES, "sharp": ("1.234567", "0.8")})  # six decimals: finer than 0.00001 yuan
    page.click("button[data-brush=valley]")
    expect(page.locator("button[data-brush=valley]")).to_have_attribute("aria-pressed", "true")
    drag(page, 0, 15)  # 00:00-08:00 valley
    page.click("button[data-brush=peak]")
    drag(page, 20, 23)  # 10:00-12:00 peak
    page.locator(f"{slot(page, 36)} .time").click()  # 18:00 peak by a single click
    page.click("button[data-brush=sharp]")
    drag(page, 24, 27)  # 12:00-14:00 sharp
    page.click("button[data-brush=sharp]")  # the brush off: the selects work again
    expect(page.locator("button[data-brush=sharp]")).to_have_attribute("aria-pressed", "false")
    page.select_option("select[name=slot-47]", "valley")
    expect(page.locator(".strip-totals .tier-valley b")).to_have_text("8.5")
    expect(page.locator(".strip-totals .tier-sharp b")).to_have_text("2")
    expect(page.locator(".strip-totals .tier-peak b")).to_have_text("2.5")
    expect(page.locator(slot(page, 5))).to_have_attribute("data-tier", "valley")
    painted = {i: "valley" for i in range(16)} | {i: "peak" for i in (20, 21, 22, 23, 36)} | {
        i: "sharp" for i in range(24, 28)} | {47: "valley"}
    expected = ["flat"] * 48
    for i, tier in painted.items():
        expected[i] = tier
    assert [page.locator(f"select[name=slot-{i}]").input_value() for i in range(48)] == expected

    page.click("main form.form button[type=submit]")
    error = page.locator("#price-sharp-electricity-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("at most 5 decimals")  # domain.money's own words, at the field
    expect(page.locator("input[name=price-sharp-electricity]")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".alert")).to_have_text("请更正标出的字段")
    assert page.locator(".error").count() == 1  # nothing else was refused
    assert [page.locator(f"select[name=slot-{i}]").input_value() for i in range(48)] == expected  # kept
    expect(page.locator("input[name=price-valley-electricity]")).to_have_value("0.35")
    page.screenshot(path=str(SHOTS / "tariff-editor-refused-zh-desktop.png"), full_page=True)
    page.fill("input[name=price-sharp-electricity]", "1.2")
    page.click("main form.form button[type=submit]")

    expect(page.locator("h1")).to_contain_text("峰谷 2027")
    expect(page.locator(".notice")).to_have_text("已保存：第 1 版。")
    tariff_id = UUID(page.url.split("/tariffs/")[1].split("?")[0])
    tariff = console.ledger.tariffs.tariff(tariff_id)
    assert [TIERS[i] for i in tariff.schedule_dict["slots"]] == expected
    assert tariff.schedule_dict["prices"] == {
        "sharp": {"electricity": 120000, "service": 80000}, "peak": {"electricity": 100000, "service": 80000},
        "flat": {"electricity": 70000, "service": 60000}, "valley": {"electricity": 35000, "service": 40000}}
    expect(page.locator("tr[data-tier=sharp] td").first).to_have_text("1.20")
    expect(page.locator(".strip-view li.tier-sharp")).to_have_count(4)
    screenshots(page, "tariff")

    # assign it to a station, and push it to that station's pile
    page.select_option("select[name=station]", str(a.stations[0]))
    page.click("form.assign button")
    expect(page.locator(".notice")).to_have_text("已为站点 Alpha East 设置此计费规则。")
    assert console.ledger.registry.station(a.stations[0]).tariff_id == tariff_id
    shown_after_reloads(page, f"form:has(input[value='{a.piles[0]}']) button")  # the views catch up
    page.locator(f"form:has(input[value='{a.piles[0]}']) button").click()
    expect(page.locator(".notice")).to_have_text(f"已向充电桩 {a.piles[0]} 下发计费规则。")
    page.goto(console.url("/console/tariffs"))
    expect(page.locator(f"tr[data-tariff='{tariff_id}'] td").nth(1)).to_have_text("1")
    screenshots(page, "tariffs")


def test_without_script_the_editor_posts_its_48_slots_all_the_same(page: Page, console: Console) -> None:
    a = build_tenant(console.ledger, "Alpha", "3201060001", "ops")
    operator_user(console.app, "alpha-admin", TENANT_ADMIN, a.tenant_id)
    page.route("**/alpinejs-csp.min.js", lambda route: route.fulfill(status=200, body="",
                                                                      content_type="text/javascript"))
    page.goto(console.url("/console/login?next=/console/tariffs/new"))
    sign_in(page, console, "alpha-admin")
    expect(page.locator("h1")).to_have_text("新建计费规则")
    expect(page.locator("fieldset.strip-editor.live")).to_have_count(0)  # no Alpine: no brushes
    expect(page.locator(".brushes")).to_be_hidden()
    page.fill("input[name=name]", "no script")
    fill_prices(page, PRICES)
    page.select_option("select[name=slot-0]", "sharp")
    page.select_option("select[name=slot-47]", "valley")
    page.click("main form.form button[type=submit]")
    expect(page.locator(".notice")).to_have_text("已保存：第 1 版。")
    tariff = console.ledger.tariffs.tariff(UUID(page.url.split("/tariffs/")[1].split("?")[0]))
    assert tariff.schedule_dict["slots"] == [0] + [2] * 46 + [3]
