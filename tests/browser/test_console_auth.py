"""Signing in and out of the console in Chromium; a form without its CSRF token is refused; another
tenant's station is a 404 page; the pages load with the CSP on and nothing it blocks."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from adapters.api.auth import TENANT_ADMIN
from tests.browser.conftest import Console, screenshots
from tests.console import operator_user
from tests.e2e.test_projections import build_tenant
from tests.operator_tokens import PASSWORD


def sign_in(page: Page, console: Console, username: str) -> None:
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")


def test_an_admin_signs_in_is_sent_back_to_the_page_asked_for_and_signs_out(page: Page, console: Console) -> None:
    a = build_tenant(console.ledger, "Alpha", "3201060001", "ops")
    operator_user(console.app, "alpha-admin", TENANT_ADMIN, a.tenant_id)

    page.goto(console.url("/console/stations"))
    expect(page).to_have_url(console.url("/console/login?next=%2Fconsole%2Fstations"))
    screenshots(page, "login")
    page.fill("input[name=username]", "alpha-admin")
    page.fill("input[name=password]", "not the password")
    page.click("main button[type=submit]")
    expect(page.locator(".alert")).to_have_text("用户名或密码错误")

    sign_in(page, console, "alpha-admin")
    expect(page).to_have_url(console.url("/console/stations"))
    expect(page.locator("h1")).to_have_text("站点信息")
    expect(page.locator("table.grid tbody tr")).to_have_count(2)
    cookie = next(c for c in page.context.cookies() if c["name"] == "cl_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    page.click("text=退出登录")
    expect(page).to_have_url(console.url("/console/login?signed_out=1"))
    expect(page.locator(".notice")).to_have_text("您已退出登录")
    page.goto(console.url("/console/stations"))
    expect(page).to_have_url(console.url("/console/login?next=%2Fconsole%2Fstations"))


def test_a_form_posted_without_its_csrf_token_is_refused(page: Page, console: Console) -> None:
    a = build_tenant(console.ledger, "Alpha", "3201060001", "ops")
    operator_user(console.app, "alpha-admin", TENANT_ADMIN, a.tenant_id)
    page.goto(console.url("/console/login"))
    sign_in(page, console, "alpha-admin")
    page.goto(console.url("/console/stations/new"))
    page.fill("input[name=name]", "Forged")
    page.fill("input[name=latitude]", "31.2")
    page.fill("input[name=longitude]", "121.5")
    page.eval_on_selector_all("input[name=csrf]", "all => all.forEach(e => e.remove())")  # a forged form's lack
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("请求已拒绝")
    assert "CSRF" in page.locator("main").inner_text()
    with console.app.state.pool.connection() as conn:  # nothing was created: the ledger has two stations
        assert conn.execute("SELECT count(*) FROM registry_events WHERE topic LIKE '%Station.Created%'"
                            ).fetchone()[0] == 2


def test_tenant_b_cannot_open_tenant_a_station_page(page: Page, console: Console) -> None:
    a = build_tenant(console.ledger, "Alpha", "3201060001", "ops")
    b = build_tenant(console.ledger, "Beta", "3201060002", "ops")
    operator_user(console.app, "beta-admin", TENANT_ADMIN, b.tenant_id)
    page.goto(console.url("/console/login"))
    sign_in(page, console, "beta-admin")
    expect(page.locator("h1")).to_have_text("运营概览")
    answer = page.goto(console.url(f"/console/stations/{a.stations[0]}"))
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("页面不存在")
    own = page.goto(console.url(f"/console/stations/{b.stations[0]}"))
    assert own is not None and own.status == 200
    expect(page.locator("h1")).to_have_text("Beta East")
