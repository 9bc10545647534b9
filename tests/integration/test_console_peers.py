"""The console's peers pages (互联互通) without a browser, on A of the roaming harness (A's console on A's
database): B's users charge on A's piles (one push to B failing while B is down), A's drivers charge on
B's piles through A's Ledger.

The list shows each link's health and the settlement exactly as ``GET /operator/v1/peers`` and
``…/settlement`` answer; one peer's page lists its orders of both directions on the API's keyset, page
by page as the API pages them; a bad cursor is refused on the page, a malformed OperatorID is the 404
page. Another tenant's admin sees none of it (its list is empty, the peer's page is 404); an agent and
a platform admin get the 403 page and no link in the navigation; no page carries a secret of the link.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.api.auth import AGENT, PLATFORM_ADMIN, TENANT_ADMIN
from adapters.interconnect.tcec.envelope import SHANGHAI
from adapters.web.mount import CSP
from adapters.web.pages import peers as peers_page
from adapters.web.render import local
from tests.console import Scripts, console_app, signed_in
from tests.integration.roaming_harness import A_ID, B_ID, Roaming, roaming, seq, step  # noqa: F401
from tests.integration.test_interconnect_outbox import settle, started
from tests.integration.test_operator_peers import china, our_driver, roam, secrets
from tests.operator_tokens import operator_headers

PEERS = "/console/peers"


class Rows(HTMLParser):
    """Each ``<tr>`` with data attributes: those attributes, and the text of each of its cells marked
    ``data-health`` or ``data-figure`` (``data-seconds`` too, under ``lag_s``)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self._cell: str | None = None
        self._depth = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "tr" and any(k.startswith("data-") for k in names):
            self.rows.append({k.removeprefix("data-"): v for k, v in names.items() if k.startswith("data-")})
        elif self._cell is not None:
            self._depth += 1
        elif self.rows and (cell := names.get("data-health") or names.get("data-figure")):
            self._cell, self._depth = cell, 0
            self.rows[-1][cell] = ""
            if "data-seconds" in names:
                self.rows[-1]["lag_s"] = int(names["data-seconds"] or 0)

    def handle_endtag(self, tag: str) -> None:
        if self._cell is not None:
            if self._depth == 0:
                self.rows[-1][self._cell] = " ".join(self.rows[-1][self._cell].split())
                self._cell = None
            else:
                self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self.rows[-1][self._cell] += data


@pytest.fixture
def console(roaming: Roaming) -> Iterator[Any]:
    """A's console (and operator API) on A's database, as ``chargeledger api`` serves both."""
    app = console_app(roaming.a.ledger, roaming.a.database_url)
    with TestClient(app):
        yield app


def charges(roaming: Roaming) -> None:
    """B's users: one order finished, one charging whose start result cannot reach B (down) for an hour;
    A's driver on B's piles: one settled, one charging."""
    outbox = roaming.outbox()
    day = datetime.now(SHANGHAI).date() - timedelta(days=1)
    settle(roaming, started(roaming, 11), china(day, 20, 0))
    step(outbox)
    roaming.b_down[0] = True
    started(roaming, 12)
    step(outbox)
    with psql(roaming) as conn:
        conn.execute("UPDATE tcec_outbox SET created_at = created_at - interval '1 hour' WHERE state = 'pending'")
    t0 = china(day, 21, 0)
    wallet_id = our_driver(roaming.a)
    settled = roam(roaming.a, wallet_id, 21, t0)
    roaming.a.ledger.roaming_charging(settled.id, at=t0, start_time=t0)
    roaming.a.ledger.settle_roaming(settled.id, at=china(day, 22, 1), energy=123_456, electricity_fen=1_234,
                                    service_fen=567, start_time=t0, end_time=china(day, 22, 0), stop_reason=0)
    charging = roam(roaming.a, wallet_id, 22, t0)
    roaming.a.ledger.roaming_charging(charging.id, at=t0, start_time=t0)
    roaming.views()


def psql(roaming: Roaming) -> Any:
    import psycopg

    return psycopg.connect(roaming.a.database_url, autocommit=True)


def test_the_peers_page_shows_the_apis_health_and_settlement_in_both_languages(roaming: Roaming,
                                                                               console: Any) -> None:
    charges(roaming)
    admin = signed_in(console, "a-admin", TENANT_ADMIN, roaming.a.tenant_id)
    api = {"headers": operator_headers(console, TENANT_ADMIN, roaming.a.tenant_id)}
    (peer,) = console_get(console, "/operator/v1/peers", **api)["items"]
    settlement = console_get(console, "/operator/v1/peers/settlement", **api)["items"]
    texts = []
    for lang in ("zh", "en"):
        r = admin.get(PEERS, params={"lang": lang})
        assert r.status_code == 200, r.text[-500:]
        assert r.headers["content-security-policy"] == CSP and Scripts(r.text).inline == []
        texts.append(r.text)
    assert 'href="/console/peers" class="current" aria-current="page">互联互通' in texts[0]
    rows = Rows(texts[1]).rows
    (shown,) = [r for r in rows if "day" not in r and r.get("peer") == B_ID]
    health = peer["health"]
    assert health["retrying"] >= 1 and health["failed"] == 0  # the start result B missed, at least
    assert {k: shown[k] for k in ("pending", "retrying", "failed", "last_error")} == {
        "pending": str(health["pending"]), "retrying": str(health["retrying"]), "failed": "0",
        "last_error": health["last_error"]}
    assert "ConnectError" in shown["last_error"] and shown["lag_s"] >= 3600 and health["lag_s"] >= 3600
    assert shown["last_delivered"].startswith(local(health["last_delivered"]))
    assert shown["last_inbound"] == local(health["last_inbound_at"]) and shown["enabled"] == "enabled"
    assert shown["role"].startswith("Customer platform")
    days = [r for r in rows if "day" in r]
    assert len(settlement) == 1 and settlement[0]["receivable"]["orders"] == 1
    assert settlement[0]["payable"] == {"orders": 1, "energy_kwh": "12.3456", "total_yuan": "18.01"}
    assert [{"operator_id": r["peer"], "day": r["day"],
             **{side: {"orders": int(r[f"{side}-orders"]), "energy_kwh": r[f"{side}-energy"],
                       "total_yuan": r[f"{side}-total"]} for side in ("receivable", "payable")}}
            for r in days] == settlement
    assert not any(secret in text for secret in secrets(roaming) for text in texts)


def console_get(app: Any, path: str, **kw: Any) -> Any:
    answer = TestClient(app).get(path, **kw)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_peers_orders_page_by_page_as_the_api_pages_them(roaming: Roaming, console: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    charges(roaming)
    monkeypatch.setattr(peers_page, "PAGE", 3)
    admin = signed_in(console, "a-admin", TENANT_ADMIN, roaming.a.tenant_id)
    api = {"headers": operator_headers(console, TENANT_ADMIN, roaming.a.tenant_id)}
    expected = console_get(console, f"/operator/v1/peers/{B_ID}/orders", params={"limit": 3}, **api)
    rest = console_get(console, f"/operator/v1/peers/{B_ID}/orders",
                       params={"limit": 3, "cursor": expected["next_cursor"]}, **api)
    pages, path, texts = [], f"{PEERS}/{B_ID}", []
    while path:
        r = admin.get(path)
        assert r.status_code == 200 and Scripts(r.text).inline == [], r.text[-500:]
        texts.append(r.text)
        pages.append([(o["direction"], o["seq"], o["state"]) for o in Rows(r.text).rows if "direction" in o])
        found = [line for line in r.text.splitlines() if 'rel="next"' in line]
        path = found[0].split('href="')[1].split('"')[0].replace("&amp;", "&") if found else ""
    assert pages == [[(o["direction"], o["start_charge_seq"], o["state"]) for o in answer["items"]]
                     for answer in (expected, rest)]
    assert [len(p) for p in pages] == [3, 1] and rest["next_cursor"] is None
    assert pages[0][:2] == [("as_customer", f"{A_ID}{22:018d}", "charging"),
                            ("as_customer", f"{A_ID}{21:018d}", "settled")]
    assert {o[1] for p in pages for o in p} >= {seq(11), seq(12)}
    trade = roaming.a.scalar("SELECT trade_no FROM tcec_starts WHERE start_charge_seq = %s", seq(11))
    assert f'href="/console/orders/{trade}"' in "".join(texts)  # B's user's order, to its own page
    assert "18.01" in texts[0] and "driver-wang" in texts[0]
    assert not any(secret in text for secret in secrets(roaming) for text in texts)

    refused = admin.get(f"{PEERS}/{B_ID}", params={"cursor": "bm90IGEgbnVtYmVy"})
    assert refused.status_code == 422 and 'role="alert"' in refused.text
    for bad in ("ZZZZZZZZZ", "short", "BPLATFORM1"):  # no such peer, not an OperatorID
        assert admin.get(f"{PEERS}/{bad}").status_code == 404


def main(html: str) -> str:
    """What a page shows below its header."""
    return html.split('<main class="page">')[1]


def test_another_tenant_sees_nothing_and_an_agent_or_platform_admin_gets_403(roaming: Roaming,
                                                                             console: Any) -> None:
    charges(roaming)
    other = signed_in(console, "other-admin", TENANT_ADMIN, roaming.other.tenant_id)
    listing = other.get(PEERS, params={"lang": "en"})
    assert listing.status_code == 200 and "No peer platforms yet." in listing.text
    assert B_ID not in listing.text and "平台B" not in listing.text and "data-day" not in listing.text
    page = other.get(f"{PEERS}/{B_ID}")
    assert page.status_code == 404 and B_ID not in main(page.text)  # (the language switch names the path)
    agent = signed_in(console, "a-agent", AGENT, roaming.a.tenant_id, [roaming.world.station_id])
    platform = signed_in(console, "platform", PLATFORM_ADMIN)
    for who in (agent, platform):
        assert 'href="/console/peers"' not in who.get("/console/").text
        for path in (PEERS, f"{PEERS}/{B_ID}", f"{PEERS}/{B_ID}?cursor=MQ"):
            refused = who.get(path)
            assert refused.status_code == 403 and B_ID not in main(refused.text), path
    admin = signed_in(console, "a-admin", TENANT_ADMIN, roaming.a.tenant_id)
    assert 'href="/console/peers"' in admin.get("/console/").text
