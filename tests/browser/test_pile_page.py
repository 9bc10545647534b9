"""One pile's page in Chromium: a scripted YKC pile logs in to a real gateway (with the relay, so commands reach
it through NATS); the tenant admin opens the pile's page, sees its frames arrive without a reload, sends a
reboot and sees the last command and the pile's answer, and the reboot's frames, come in live."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from playwright.sync_api import Page, expect

from adapters.api.auth import TENANT_ADMIN
from pile_link.ykc import Heartbeat, Reboot, RebootAck
from tests.browser.charging import ChargingConsole, console, payment_keys  # noqa: F401  (fixtures)
from tests.browser.conftest import screenshots
from tests.browser.test_console_auth import sign_in
from tests.console import operator_user
from tests.e2e.test_projections import build_tenant
from tests.ykc_pile import ScriptedPile

IDLE = 2


async def scripted_pile(pile_no: str, port: int, logged_in: threading.Event, rebooted: Future[Reboot],
                        done: threading.Event) -> None:
    """A scripted pile: logs in, reports gun 1 idle, beats once a second, answers a reboot "succeeded"."""
    pile = ScriptedPile(pile_no)
    await pile.login(port)
    pile.send(pile.realtime(1, status=IDLE, plugged=0))
    try:
        while not done.is_set():
            pile.send(Heartbeat(pile_no, "01", 0))
            logged_in.set()
            try:
                frame, reboot = await pile.expect_frame(Reboot, timeout=1)
            except asyncio.TimeoutError:
                continue
            pile.answer(frame, RebootAck(pile_no, 1))
            rebooted.set_result(reboot)
    finally:
        await pile.close()


def test_a_tenant_admin_sees_a_piles_frames_and_reboots_it(console: ChargingConsole, page: Page) -> None:  # noqa: F811 (console first: its NATS set-up runs before Playwright's loop)
    a = build_tenant(console.ledger, "Alpha", "3201060001", "ops")
    pile_no = a.piles[0]
    operator_user(console.app, "alpha-admin", TENANT_ADMIN, a.tenant_id)
    page.goto(console.url("/console/login"))
    sign_in(page, console, "alpha-admin")
    page.goto(console.url(f"/console/piles/{pile_no}"))
    expect(page.locator("#pile-frames .empty")).to_be_visible()  # nothing yet: the pile never logged in
    page.evaluate("document.body.dataset.sameDocument = 'yes'")  # gone if the page were loaded again

    assert console.loop is not None and console.gateway is not None
    logged_in, done, rebooted = threading.Event(), threading.Event(), Future()  # type: ignore[var-annotated]
    pile = asyncio.run_coroutine_threadsafe(
        scripted_pile(pile_no, console.gateway.port, logged_in, rebooted, done), console.loop)
    assert logged_in.wait(30)
    expect(page.locator("#pile-status")).to_have_attribute("data-online", "yes")
    expect(page.locator("#pile-status [data-gun='1']")).to_have_attribute("data-status", "idle")
    login = page.locator("#pile-frames tr[data-type='0x01']")
    expect(login).to_have_attribute("data-direction", "in")
    expect(login).to_contain_text("Login")
    expect(page.locator("#pile-frames tr[data-type='0x02'][data-direction='out']")).to_have_count(1)
    expect(page.locator("#pile-frames tr[data-type='0x13']")).to_have_count(1)
    assert page.evaluate("document.body.dataset.sameDocument") == "yes"
    screenshots(page, "pile")

    page.click("form[action$='/reboot'] button")
    expect(page.locator(".notice")).to_contain_text("已发出远程重启")
    assert rebooted.result(60).exec_control == 1  # the frame reached the pile through the ledger, NATS and the gateway
    command = page.locator("#pile-command")
    expect(command).to_have_attribute("data-command", "reboot")
    expect(command).to_contain_text("alpha-admin")
    expect(command).to_have_attribute("data-answer", "ok")
    expect(page.locator("#pile-frames tr[data-type='0x92'][data-direction='out']")).to_have_count(1)
    expect(page.locator("#pile-frames tr[data-type='0x91'][data-direction='in']")).to_contain_text("RebootAck")
    expect(page.locator("#pile-status")).to_contain_text("心跳")  # counted, and never a row of the table
    expect(page.locator("#pile-frames tr[data-type='0x03']")).to_have_count(0)
    screenshots(page, "pile-rebooted")
    done.set()
    pile.result(30)
