"""One pile's page without a browser (TestClient on real Postgres): its status, its frames decoded by the codec
(and the API's JSON of them), its remote commands each reaching the ledger as the API's endpoint does, every
form refused without its CSRF token, refusals shown on the page, and the API's scope: another tenant's pile
is 404 everywhere, an agent works its own stations' piles only and gets the 403 page for enable/disable."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from adapters.api.auth import AGENT, PLATFORM_ADMIN, TENANT_ADMIN
from adapters.postgres import pile_frames
from adapters.web.mount import CSP
from domain.registry import Pile
from pile_link.ykc import HeartbeatAck, Login, LoginAck, encode_message
from tests.console import Scripts, csrf_of
from tests.integration.test_console import World, world  # noqa: F401 - the console's fixture
from tests.operator_tokens import operator_headers

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=timezone.utc)


def record_frames(w: World, pile_no: str, frames: list[tuple[bool, bytes, str | None]], beats: int = 0) -> None:
    """What the gateway's frame log would write: (outgoing, wire bytes, envelope error) in order."""
    t0 = time.time()
    rows = [(pile_no, t0 + i / 1000, out, raw[5], raw[2:4], raw[6:-2], False, error)
            for i, (out, raw, error) in enumerate(frames)]
    with w.app.state.pool.connection() as conn:
        pile_frames.write(conn, rows, {pile_no: (beats, t0)} if beats else {})
        conn.commit()


def login_frames(pile_no: str) -> list[tuple[bool, bytes, str | None]]:
    login = encode_message(Login(pile_no, 0, 2, 0x10, "V4.1.50", 0, "0" * 20, 4), b"\x00\x01")
    garbled = encode_message(HeartbeatAck(pile_no, "01", 0), b"\x00\x02")[:-3] + b"\x00\x00"  # one byte short
    return [(False, login, None), (True, encode_message(LoginAck(pile_no, 0), b"\x00\x01"), None),
            (False, garbled, None)]


def commands(w: World, pile_no: str) -> list[tuple[str, str, str]]:
    """The pile's CommandRequested events as the ledger stored them: (command, author, params)."""
    events = w.app.state.ledger.registry.repository.event_store.get(Pile.create_id(pile_no))
    return [(e.command, e.author, str(e.params)) for e in events if type(e).__name__ == "CommandRequested"]


def post(client: Any, path: str, page: str, **data: str) -> Any:
    return client.post(path, data={**data, "csrf": csrf_of(client.get(page).text)}, follow_redirects=False)


def online(w: World, pile_no: str) -> None:
    w.app.state.ledger.pile_connected(pile_no, NOW, "gw-1", 0x10, "V4.1.50")
    w.app.state.ledger.report_gun(pile_no, 1, "idle", True, {}, NOW)
    w.projections.catch_up()


# ---- the page -------------------------------------------------------------------------------------------------
def test_the_page_shows_the_pile_its_live_status_and_its_frames_decoded(world: World) -> None:
    pile_no = world.a.piles[0]
    online(world, pile_no)
    record_frames(world, pile_no, login_frames(pile_no), beats=7)
    alpha = world.signed_in("alpha")
    for lang in ("zh", "en"):
        r = alpha.get(f"/console/piles/{pile_no}", params={"lang": lang})
        assert r.status_code == 200 and r.headers["content-security-policy"] == CSP
        assert Scripts(r.text).inline == []
        assert "Alpha East" in r.text and 'data-online="yes"' in r.text and 'data-status="idle"' in r.text
        assert 'data-type="0x01"' in r.text and "0x01</span> Login" in r.text and "V4.1.50" in r.text
        assert 'data-type="0x02" data-direction="out"' in r.text
        assert "0x04 HeartbeatAck needs 9 payload bytes, got 8 [length]" in r.text  # the codec's reason, then hex
        assert 'sse-connect="/console/piles/' + pile_no + '/live"' in r.text
    assert "心跳 7 次" in alpha.get(f"/console/piles/{pile_no}?lang=zh").text
    assert "充电桩登录认证" in alpha.get(f"/console/piles/{pile_no}?lang=zh").text  # the protocol's own name
    assert alpha.get("/console/piles").text.count(f'href="/console/piles/{pile_no}"') == 1  # linked from the list


def test_the_page_and_the_api_read_the_same_frames_newest_first_with_older_pages(world: World) -> None:
    pile_no = world.a.piles[0]
    frames = [(False, encode_message(HeartbeatAck(pile_no, "01", n % 2), n.to_bytes(2, "big")), None)
              for n in range(120)]  # as if sent by the pile: any frame will do for paging
    record_frames(world, pile_no, frames)
    headers = operator_headers(world.app, TENANT_ADMIN, world.a.tenant_id)
    first = world.client.get(f"/operator/v1/piles/{pile_no}/frames", headers=headers).json()
    assert [f["seq"] for f in first["items"]] == [f"{n:04X}" for n in range(119, 69, -1)]
    assert first["items"][0]["message"] == "HeartbeatAck" and first["items"][0]["fields"]["ack"] == 1
    second = world.client.get(f"/operator/v1/piles/{pile_no}/frames", headers=headers,
                              params={"cursor": first["next_cursor"]}).json()
    assert [f["seq"] for f in second["items"]] == [f"{n:04X}" for n in range(69, 19, -1)]
    bad = world.client.get(f"/operator/v1/piles/{pile_no}/frames", headers=headers, params={"cursor": "x"})
    assert bad.status_code == 422
    alpha = world.signed_in("alpha")
    page = alpha.get(f"/console/piles/{pile_no}").text
    assert page.count("<tr data-frame=") == 50 and 'data-frame="119"' in page and 'data-frame="69"' not in page
    older = alpha.get(f"/console/piles/{pile_no}", params={"before": first["next_cursor"]}).text
    assert 'data-frame="69"' in older and 'data-frame="119"' not in older
    assert 'sse-swap="pile-frames"' not in older  # an older page stays put; the newest is live
    assert alpha.get(f"/console/piles/{pile_no}", params={"before": "nope"}).status_code == 422


# ---- scope ---------------------------------------------------------------------------------------------------
def test_another_tenants_pile_is_404_on_every_page_stream_form_and_the_api(world: World) -> None:
    pile_no = world.a.piles[0]
    record_frames(world, pile_no, login_frames(pile_no))
    beta = world.signed_in("beta", tenant=world.b)
    mine = f"/console/piles/{world.b.piles[0]}"
    for path in (f"/console/piles/{pile_no}", f"/console/piles/{pile_no}/live", "/console/piles/123",
                 "/console/piles/99999999999999"):
        assert beta.get(path).status_code == 404, path
    for action in ("reboot", "push-tariff", "start", "stop", "enable", "disable"):
        r = post(beta, f"/console/piles/{pile_no}/{action}", mine, gun_no="1", trade_no="T1")
        assert r.status_code == 404 and "页面不存在" in r.text, action
    assert commands(world, pile_no) == []
    headers = operator_headers(world.app, TENANT_ADMIN, world.b.tenant_id)
    assert world.client.get(f"/operator/v1/piles/{pile_no}/frames", headers=headers).status_code == 404


def test_an_agent_commands_its_stations_piles_only_and_gets_403_for_enable_and_disable(world: World) -> None:
    agent = world.signed_in("agent-1", AGENT, stations=[world.a.stations[0]])
    mine, theirs = world.a.piles
    page = agent.get(f"/console/piles/{mine}")
    assert page.status_code == 200 and "/enable" not in page.text  # the page offers what the role may do
    assert agent.get(f"/console/piles/{theirs}").status_code == 404
    assert post(agent, f"/console/piles/{theirs}/reboot", f"/console/piles/{mine}").status_code == 404
    assert post(agent, f"/console/piles/{mine}/reboot", f"/console/piles/{mine}").status_code == 303
    for action in ("enable", "disable"):
        r = post(agent, f"/console/piles/{mine}/{action}", f"/console/piles/{mine}")
        assert r.status_code == 403 and "无权操作" in r.text
    assert [c[:2] for c in commands(world, mine)] == [("reboot", "agent-1")]
    assert world.app.state.ledger.registry.pile(mine).enabled
    admin = world.signed_in("root", PLATFORM_ADMIN)  # every tenant's piles, no tenant to command in
    page = admin.get(f"/console/piles/{theirs}")
    assert page.status_code == 200 and "/reboot" not in page.text
    r = post(admin, f"/console/piles/{theirs}/reboot", f"/console/piles/{theirs}")
    assert r.status_code == 403 and commands(world, theirs) == []


# ---- commands: each the API's own, behind CSRF ------------------------------------------------------------
def test_every_command_form_is_refused_without_its_csrf_token(world: World) -> None:
    pile_no = world.a.piles[0]
    online(world, pile_no)
    alpha = world.signed_in("alpha")
    for action in ("reboot", "push-tariff", "start", "stop", "enable", "disable"):
        for data in ({"gun_no": "1"}, {"gun_no": "1", "csrf": "forged"}):
            r = alpha.post(f"/console/piles/{pile_no}/{action}", data=data, follow_redirects=False)
            assert r.status_code == 403 and "CSRF" in r.text, action
    assert commands(world, pile_no) == [] and world.app.state.ledger.registry.pile(pile_no).enabled
    assert world.app.state.ledger.registry.pile(pile_no).guns["1"]["status"] == "idle"  # nothing started


def test_each_command_reaches_the_ledger_as_the_apis_endpoint_does(world: World) -> None:
    by_page, by_api = world.a.piles
    for pile_no in world.a.piles:
        online(world, pile_no)
    alpha = world.signed_in("alpha")
    headers = operator_headers(world.app, TENANT_ADMIN, world.a.tenant_id, subject="alpha")
    page = f"/console/piles/{by_page}"
    for action in ("reboot", "push-tariff"):
        r = post(alpha, f"{page}/{action}", page)
        assert r.status_code == 303 and r.headers["location"].startswith(f"{page}?sent=")
        assert world.client.post(f"/operator/v1/piles/{by_api}/{action}", headers=headers).status_code == 202
    assert commands(world, by_page) == commands(world, by_api)  # the tariff pushed is the same: both stations'
    assert [c[:2] for c in commands(world, by_page)] == [("reboot", "alpha"), ("push_tariff", "alpha")]

    r = post(alpha, f"{page}/start", page, gun_no="1")
    assert r.status_code == 303
    trade = r.headers["location"].split("trade_no=")[1]
    api_trade = world.client.post(f"/operator/v1/piles/{by_api}/start", json={"gun_no": 1}, headers=headers).json()
    ledger = world.app.state.ledger
    ours, theirs = ledger.session(trade), ledger.session(api_trade["trade_no"])
    same = ("state", "origin", "wallet_id", "hold_fen", "gun_no", "tenant_id")
    assert {k: getattr(ours, k) for k in same} == {k: getattr(theirs, k) for k in same}
    assert (ours.origin, ours.wallet_id, ours.hold_fen, ours.pile_no) == ("commissioning", None, 0, by_page)

    assert post(alpha, f"{page}/stop", page, trade_no=api_trade["trade_no"]).status_code == 404  # not this pile's
    r = post(alpha, f"{page}/stop", page, trade_no=trade)
    assert r.status_code == 303 and f"trade_no={trade}" in r.headers["location"]
    assert world.client.post(f"/operator/v1/orders/{api_trade['trade_no']}/stop", json={},
                             headers=headers).status_code == 202
    assert ledger.session(trade).state == ledger.session(api_trade["trade_no"]).state

    assert post(alpha, f"{page}/disable", page, reason="maintenance").status_code == 303
    assert not ledger.registry.pile(by_page).enabled
    assert post(alpha, f"{page}/enable", page).status_code == 303 and ledger.registry.pile(by_page).enabled


def test_a_refused_command_is_shown_on_the_page_and_a_bad_field_at_the_field(world: World) -> None:
    pile_no = world.a.piles[0]  # two guns: the ledger refuses a start on a third
    alpha = world.signed_in("alpha")
    page = f"/console/piles/{pile_no}"
    r = post(alpha, f"{page}/start", page, gun_no="3")
    assert r.status_code == 409 and "has no gun 3" in r.text
    r = post(alpha, f"{page}/start", page, gun_no="0")
    assert r.status_code == 422 and 'id="gun_no-error"' in r.text
    r = post(alpha, f"{page}/disable", page, reason="x" * 501)
    assert r.status_code == 422 and 'id="reason-error"' in r.text and world.app.state.ledger.registry.pile(pile_no).enabled


# ---- the live stream ---------------------------------------------------------------------------------------
def test_the_live_stream_sends_the_pages_live_parts_then_only_what_changed(world: World) -> None:
    pile_no = world.a.piles[0]
    alpha = world.signed_in("alpha")
    events: list[str] = []
    ticks = 0
    with alpha.stream("GET", f"/console/piles/{pile_no}/live") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event:"):
                events.append(line.split(":", 1)[1].strip())
            if line == ": tick":
                ticks += 1
                if ticks == 1:  # the pile comes online: only its status part changes
                    online(world, pile_no)
                if ticks == 3:
                    with world.app.state.pool.connection() as conn:
                        conn.execute("UPDATE operator_users SET disabled = true WHERE username = 'alpha'")
    assert events == ["pile-status", "pile-command", "pile-frames", "pile-status", "signed-out"]
