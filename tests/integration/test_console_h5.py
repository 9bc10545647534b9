"""The driver H5 pages without a browser: sign-in through the driver identity adapters (the WeChat fake's
code2session), the driver cookie, CSRF on every form, a driver sees only their own sessions, top-ups and
wallet (another's is 404), the top-up through the payment fake's signed notification, the demo login
off unless configured, the printed QR link, the CSP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.postgres.env import eventsourcing_env
from adapters.web.mount import CSP
from adapters.web.session import WebSettings
from domain.ledger import Ledger
from domain.wallet import Wallet
from projections.runner import Projections
from tests.console import FAST, Scripts, console_app, csrf_of
from tests.integration.driver_app import KEYS, OTHER_PILE, PILE, connect, settings_for
from tests.integration.driver_app import world as world  # noqa: F401  (the world with a station, a tariff)
from tests.payment_fakes import PayWorld

H5 = "/console/h5"


@pytest.fixture
def payment_keys() -> str:
    return KEYS  # the channels of `world` open under the API's keys


def h5_app(ledger: Ledger, database_url: str, world: PayWorld, settings: WebSettings = FAST) -> Any:
    return console_app(ledger, database_url, settings, driver=settings_for(world))


@pytest.fixture
def app(world: PayWorld, ledger: Ledger, database_url: str) -> Iterator[Any]:
    connect(ledger, PILE)
    connect(ledger, OTHER_PILE)
    application = h5_app(ledger, database_url, world)
    with TestClient(application):
        yield application


def signed_in(app: Any, world: PayWorld, openid: str, base_url: str = "http://testserver") -> TestClient:
    """A phone that opened the H5 login from the mini-program with a fresh wx.login code, and signed in."""
    client = TestClient(app, base_url=base_url)
    code, _ = world.wechat.login_code(openid)
    form = client.get(f"{H5}/login/wechat/{world.tenant_id}/wx-main", params={"code": code, "next": f"{H5}/wallet"})
    assert form.status_code == 200 and f'value="{code}"' in form.text
    r = client.post(f"{H5}/login/wechat/{world.tenant_id}/wx-main", follow_redirects=False,
                    data={"code": code, "next": f"{H5}/wallet", "csrf": csrf_of(form.text)})
    assert r.status_code == 303 and r.headers["location"] == f"{H5}/wallet", r.text
    return client


def top_up(client: TestClient, world: PayWorld, yuan: str) -> str:
    """The wallet's top-up form, then WeChat Pay's signed notification to our callback; the order's page."""
    page = client.get(f"{H5}/wallet")
    r = client.post(f"{H5}/wallet/top-ups", data={"amount": yuan, "csrf": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    out_trade_no = r.headers["location"].rsplit("/", 1)[1]
    assert 'data-state="prepared"' in client.get(r.headers["location"]).text
    headers, body = world.wechat.payment_notification(out_trade_no)
    paid = client.post(f"/pay/wechat/notify/{world.tenant_id}/wx-main", content=body,
                       headers={**headers, "Content-Type": "application/json"})
    assert paid.status_code == 204, paid.text
    return r.headers["location"]


def start(client: TestClient, pile_no: str = PILE, gun_no: int = 1) -> str:
    page = client.get(f"{H5}/c/{pile_no}{gun_no:02d}")
    assert page.status_code == 200, page.text
    key = re.search(r'name="key" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    form = {"pile_no": pile_no, "gun_no": str(gun_no), "key": key, "csrf": csrf_of(page.text)}
    r = client.post(f"{H5}/sessions", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    again = client.post(f"{H5}/sessions", data=form, follow_redirects=False)  # a double tap: the same session
    assert again.headers["location"] == r.headers["location"]
    return r.headers["location"].rsplit("/", 1)[1]


def test_sign_in_through_the_wechat_code_sets_an_httponly_lax_cookie_secure_over_tls(app: Any, world: PayWorld) -> None:
    phone = signed_in(app, world, "o-li")
    cookie = phone.cookies["cl_driver"]
    assert world.wechat.requests and world.wechat.requests[-1][1] == "/sns/jscode2session"
    assert phone.get(f"{H5}/wallet").status_code == 200
    tls = TestClient(app, base_url="https://charge.example")
    code, _ = world.wechat.login_code("o-li")
    form = tls.get(f"{H5}/login/wechat/{world.tenant_id}/wx-main", params={"code": code})
    r = tls.post(f"{H5}/login/wechat/{world.tenant_id}/wx-main", data={"code": code, "csrf": csrf_of(form.text)},
                 follow_redirects=False)
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith("__Host-cl_driver=") and "HttpOnly" in set_cookie and "Secure" in set_cookie
    assert "SameSite=lax" in set_cookie and "Path=/" in set_cookie
    plain = TestClient(app)
    code, _ = world.wechat.login_code("o-li")
    form = plain.get(f"{H5}/login/wechat/{world.tenant_id}/wx-main", params={"code": code})
    r = plain.post(f"{H5}/login/wechat/{world.tenant_id}/wx-main", data={"code": code, "csrf": csrf_of(form.text)},
                   follow_redirects=False)
    assert "HttpOnly" in r.headers["set-cookie"] and "Secure" not in r.headers["set-cookie"] and cookie
    # a code WeChat refuses (used twice): the form again with the reason, no cookie
    again = TestClient(app)
    form = again.get(f"{H5}/login/wechat/{world.tenant_id}/wx-main", params={"code": code})
    r = again.post(f"{H5}/login/wechat/{world.tenant_id}/wx-main", data={"code": code, "csrf": csrf_of(form.text)})
    assert r.status_code == 409 and "40029" in r.text and "cl_driver" not in again.cookies
    # Alipay's auth code, through the same identity adapter (alipay.system.oauth.token on the fake)
    ali = TestClient(app)
    code, _ = world.alipay.auth_code("2088000000000042")
    form = ali.get(f"{H5}/login/alipay/{world.tenant_id}/ali-main", params={"code": code})
    assert "支付宝登录" in form.text
    r = ali.post(f"{H5}/login/alipay/{world.tenant_id}/ali-main", data={"code": code, "csrf": csrf_of(form.text)},
                 follow_redirects=False)
    assert r.status_code == 303 and "alipay.system.oauth.token" in world.alipay.calls
    assert Wallet.create_id(world.tenant_id, "alipay:ali-main:2088000000000042") in world.ledger.wallets.repository
    # no session: every page goes to the login, and back after it
    r = TestClient(app).get(f"{H5}/c/{PILE}01", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"{H5}/login?next=%2Fconsole%2Fh5%2Fc%2F{PILE}01"


def test_every_form_needs_its_csrf_token(app: Any, world: PayWorld) -> None:
    li = signed_in(app, world, "o-li")
    wang = signed_in(app, world, "o-wang")
    top_up(li, world, "60")
    page = li.get(f"{H5}/c/{PILE}01").text
    key = re.search(r'name="key" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    form = {"pile_no": PILE, "gun_no": "1", "key": key}
    stolen = csrf_of(wang.get(f"{H5}/wallet").text)  # another driver's token is not this one's
    for data, headers in ((form, {}), ({**form, "csrf": "forged"}, {}), ({**form, "csrf": stolen}, {}),
                          (form, {"X-CSRF-Token": stolen})):
        r = li.post(f"{H5}/sessions", data=data, headers=headers, follow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text, data
    for path in (f"{H5}/wallet/top-ups", f"{H5}/wallet/refunds", f"{H5}/logout"):
        assert li.post(path, data={"amount": "1"}).status_code == 403, path
    assert li.post(f"/console/h5/login/wechat/{world.tenant_id}/wx-main", data={"code": "x"}).status_code == 403
    assert Wallet.create_id(world.tenant_id, "wechat:wx-main:o-li") in world.ledger.wallets.repository
    assert world.ledger.wallet(Wallet.create_id(world.tenant_id, "wechat:wx-main:o-li")).held == 0  # nothing started


def test_a_driver_sees_only_their_own_sessions_top_ups_and_wallet(app: Any, world: PayWorld,
                                                                   database_url: str) -> None:
    li, wang = signed_in(app, world, "o-li"), signed_in(app, world, "o-wang")
    order_page = top_up(li, world, "60.50")
    assert 'data-state="credited"' in li.get(order_page).text
    assert "¥ 60.50" in li.get(f"{H5}/wallet").text and "¥ 0.00" in wang.get(f"{H5}/wallet").text
    trade_no = start(li)
    mine = li.get(f"{H5}/sessions/{trade_no}")
    assert mine.status_code == 200 and trade_no in mine.text and f"{H5}/sessions/{trade_no}/live" in mine.text
    for path in (f"{H5}/sessions/{trade_no}", order_page, f"{H5}/sessions/{trade_no}/live",
                 f"{H5}/sessions/not-a-session", f"{H5}/sessions/{'9' * 70}"):
        r = wang.get(path)
        assert r.status_code == 404 and "data-figure" not in r.text and "data-state" not in r.text, path
    r = wang.post(f"{H5}/sessions/{trade_no}/stop", data={"csrf": csrf_of(wang.get(f"{H5}/wallet").text)})
    assert r.status_code == 404 and world.ledger.session(trade_no).state == "requested"  # not stopped
    with Projections(world.ledger.applications, eventsourcing_env(database_url)) as projections:
        projections.catch_up()  # the home page's "charging now" and the history read the orders view
    assert trade_no not in wang.get(f"{H5}/").text and trade_no not in wang.get(f"{H5}/history").text
    assert f"{H5}/sessions/{trade_no}" in li.get(f"{H5}/").text
    assert f'data-trade="{trade_no}"' in li.get(f"{H5}/history").text
    r = li.post(f"{H5}/sessions/{trade_no}/stop", data={"csrf": csrf_of(mine.text)}, follow_redirects=False)
    assert r.status_code == 303 and world.ledger.session(trade_no).state == "stopping"


def test_the_gun_page_shows_the_tariff_now_and_next_and_refuses_what_the_api_refuses(app: Any, world: PayWorld) -> None:
    li = signed_in(app, world, "o-li")
    page = li.get(f"{H5}/c/{PILE}02")
    assert page.status_code == 200 and "Riverside" in page.text and 'class="period now"' in page.text
    assert re.search(r'data-tier="(sharp|peak|flat|valley)"', page.text)
    assert "¥ 0.00" in page.text and "disabled>" in page.text  # no balance: the start button is off
    form = {"pile_no": PILE, "gun_no": "2", "key": "k" * 20, "csrf": csrf_of(page.text)}
    r = li.post(f"{H5}/sessions", data=form)
    assert r.status_code == 409 and "5.00" in r.text  # the start rules' minimum, as the API refuses it
    assert li.get(f"{H5}/c/9999999999999901").status_code == 404
    assert li.get(f"{H5}/c/not-a-gun").status_code == 404
    r = li.get(f"{H5}/gun", params={"code": f"https://charge.example.com/c/{PILE}02"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"{H5}/c/{PILE}02"
    assert li.get(f"{H5}/gun", params={"code": "nonsense"}).status_code == 422
    printed = TestClient(app).get(f"/c/{PILE}02", follow_redirects=False)  # a phone camera opening the printed QR
    assert printed.status_code == 303 and printed.headers["location"] == f"{H5}/c/{PILE}02"
    assert TestClient(app).get("/c/123").status_code == 404


def test_bad_amounts_are_refused_at_the_field_and_a_refund_goes_back_through_the_provider(app: Any,
                                                                                        world: PayWorld) -> None:
    li = signed_in(app, world, "o-li")
    token = csrf_of(li.get(f"{H5}/wallet").text)
    for amount in ("0", "-1", "1.234", "1e3", "５", "5000.01"):
        r = li.post(f"{H5}/wallet/top-ups", data={"amount": amount, "csrf": token})
        assert r.status_code == 422 and 'aria-invalid="true"' in r.text, amount
    top_up(li, world, "30")
    world.wechat.refund_answer = (200, "SUCCESS")
    r = li.post(f"{H5}/wallet/refunds", data={"amount": "10", "csrf": token})
    assert r.status_code == 200 and 'data-refund-status="succeeded"' in r.text and "¥ 20.00" in r.text
    assert world.wechat.refunds  # asked of WeChat Pay, the way it was paid


def test_the_demo_login_is_off_unless_the_settings_name_a_channel(world: PayWorld, ledger: Ledger,
                                                                  database_url: str) -> None:
    off = h5_app(ledger, database_url, world)
    with TestClient(off) as client:
        assert "/login/demo" not in client.get(f"{H5}/login").text
        token = csrf_of(client.get(f"{H5}/login/wechat/{world.tenant_id}/wx-main").text)
        assert client.post(f"{H5}/login/demo", data={"csrf": token, "name": "li"}).status_code == 404
    on = h5_app(ledger, database_url, world, WebSettings(stream_poll=0.2, h5_demo_login=f"{world.tenant_id}/wx-main"))
    with TestClient(on) as client:
        page = client.get(f"{H5}/login?next={H5}/wallet")
        assert "/login/demo" in page.text
        r = client.post(f"{H5}/login/demo", data={"csrf": csrf_of(page.text), "name": "li", "next": f"{H5}/wallet"},
                        follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"{H5}/wallet"
        assert client.get(f"{H5}/wallet").status_code == 200
        assert Wallet.create_id(world.tenant_id, "wechat:wx-main:demo-li") in ledger.wallets.repository
        assert client.post(f"{H5}/login/demo", data={"csrf": csrf_of(page.text), "name": "x"}).status_code == 403
        fresh = csrf_of(client.get(f"{H5}/login").text)  # signed in, the token is bound to the driver cookie
        r = client.post(f"{H5}/login/demo", data={"csrf": fresh, "name": "<x>"})
        assert r.status_code == 422 and "&lt;x&gt;" not in r.text and "<x>" not in r.text


def test_the_pages_have_the_csp_and_no_inline_script_and_escape_what_they_show(app: Any, world: PayWorld) -> None:
    li = signed_in(app, world, "o-li")
    paths = [f"{H5}/", f"{H5}/wallet", f"{H5}/history", f"{H5}/c/{PILE}01", f"{H5}/login", f"{H5}/sessions/x"]
    for path in paths:
        for lang in ("zh", "en"):
            r = li.get(path, params={"lang": lang})
            assert r.headers["content-security-policy"] == CSP, path
            scripts = Scripts(r.text)
            assert scripts.inline == [] and all(s and s.startswith("/console/static/") for s in scripts.sources), path
    r = TestClient(app).get(f"{H5}/login/wechat/{world.tenant_id}/wx-main", params={"code": '"><script>x</script>'})
    assert "<script>x</script>" not in r.text and "&lt;script&gt;" in r.text
    assert TestClient(app).get(f"{H5}/login/paypal/{world.tenant_id}/wx-main").status_code == 404
