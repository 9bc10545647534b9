"""The operator API's peers (docs/interconnect.md, "Peers in the operator API") on A of the roaming harness:
B's users charge on A's piles through A's door, A's outbox pushes to B; A's drivers' charges on B's piles are
charges through A's own ``Ledger`` (``start_roaming`` ... ``settle_roaming``) from a topped-up wallet.

The peers with their link's health after a delivered push, a failing one and one given up; the orders with
B in both directions on one keyset; the settlement per China day equal to the bills (and to A's daily
check_charge_orders); another tenant sees nothing, an agent and a platform admin are refused, no answer
carries a secret.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Any
from uuid import UUID

from adapters.api.auth import AGENT, PLATFORM_ADMIN, TENANT_ADMIN
from adapters.interconnect.outbox.schedule import Schedule
from adapters.interconnect.outbox.sender import RetryPolicy
from adapters.interconnect.tcec.envelope import SHANGHAI
from domain.money import fen_to_yuan_str
from domain.roaming import RoamingCharge
from tests.integration.roaming_harness import A_ID, B_ID, Roaming, Side, roaming, seq, step  # noqa: F401
from tests.integration.test_interconnect_outbox import settle, started
from tests.operator_tokens import operator_headers

PEERS = "/operator/v1/peers"


class Answers:
    """A's operator API as one principal, keeping every answer's text (to look for secrets in)."""

    def __init__(self, roaming: Roaming, role: str = TENANT_ADMIN, tenant_id: Any = None, **scope: Any) -> None:
        self.client = roaming.a.client
        self.headers = operator_headers(self.client.app, role, tenant_id or roaming.a.tenant_id, **scope)
        self.texts: list[str] = []

    def get(self, path: str, status: int = 200, **params: Any) -> Any:
        response = self.client.get(path, params=params, headers=self.headers)
        assert response.status_code == status, response.text
        self.texts.append(response.text)
        return response.json()


def secrets(roaming: Roaming) -> list[str]:
    """Every secret of the link, both directions, as A holds them."""
    peer = roaming.a.store.peers.get(roaming.a.tenant_id, B_ID)
    assert peer.outbound is not None
    return [*peer.inbound.as_dict().values(), *peer.outbound.as_dict().values()]


def test_the_peers_show_each_links_health_after_a_delivered_a_failing_and_a_given_up_push(roaming: Roaming) -> None:
    api = Answers(roaming)
    with roaming.a.client.app.state.pool.connection() as conn:  # no charge status pushes: the start results alone
        conn.execute("UPDATE tcec_peers SET status_interval = 0")
    outbox = roaming.outbox(RetryPolicy(first=timedelta(seconds=30), attempts=2))
    started(roaming, 1)  # B called A's door: query_token, query_start_charge
    step(outbox)
    (peer,) = api.get(PEERS)["items"]
    assert {k: peer[k] for k in ("operator_id", "our_operator_id", "name", "role", "dialect", "enabled", "base_url",
                                 "status_interval")} == {
        "operator_id": B_ID, "our_operator_id": A_ID, "name": "平台B", "role": "customer", "dialect": "tcec2016",
        "enabled": True, "base_url": "http://testserver/evcs/v1", "status_interval": 0}
    health = peer["health"]
    delivered = roaming.a.scalar("SELECT count(*) FROM tcec_outbox WHERE state = 'delivered'")
    assert delivered >= 3  # the guns' statuses and the start result
    assert {k: health[k] for k in ("pending", "retrying", "delivered", "failed", "lag_s", "last_error")} == {
        "pending": 0, "retrying": 0, "delivered": delivered, "failed": 0, "lag_s": 0, "last_error": None}
    last = roaming.a.scalar("SELECT max(delivered_at) FROM tcec_outbox")
    assert datetime.fromisoformat(health["last_delivered"]) == last
    inbound = roaming.a.scalar("SELECT last_inbound_at FROM tcec_peers WHERE operator_id = %s", B_ID)
    assert inbound is not None and datetime.fromisoformat(health["last_inbound_at"]) == inbound

    roaming.b_down[0] = True  # the start result of a second charge cannot reach B
    started(roaming, 2)
    first = datetime.now(timezone.utc)
    step(outbox, first)
    with roaming.a.client.app.state.pool.connection() as conn:  # it has been owed for an hour
        conn.execute("UPDATE tcec_outbox SET created_at = created_at - interval '1 hour' WHERE state = 'pending'")
    health = api.get(PEERS)["items"][0]["health"]
    assert (health["pending"], health["retrying"], health["delivered"], health["failed"]) == (1, 1, delivered, 0)
    assert health["lag_s"] >= 3600 and "ConnectError" in health["last_error"]

    step(outbox, first + timedelta(minutes=5))  # the second attempt: the policy gives up
    health = api.get(PEERS)["items"][0]["health"]
    assert (health["pending"], health["retrying"], health["delivered"], health["failed"], health["lag_s"]) == (
        0, 0, delivered, 1, 0)
    assert "ConnectError" in health["last_error"]
    assert not any(secret in text for secret in secrets(roaming) for text in api.texts)


def our_driver(a: Side) -> UUID:
    """A's driver with 200 yuan in the wallet, to roam on B's piles."""
    wallet_id = a.ledger.open_wallet(a.tenant_id, "driver-wang", author="test")
    a.ledger.top_up(wallet_id, key="top-up:wang", amount=200_00, provider="wechat", payment_ref="wx-wang-1")
    return wallet_id


def roam(a: Side, wallet_id: UUID, n: int, at: datetime) -> RoamingCharge:
    """A's driver asks B's pile to start (A's StartChargeSeq n), 50 yuan held."""
    return a.ledger.start_roaming(tenant_id=a.tenant_id, wallet_id=wallet_id, peer=B_ID,
                                  connector_id="9900000000000101", station_id="", start_charge_seq=f"{A_ID}{n:018d}",
                                  hold_fen=50_00, at=at, author="driver:driver-wang")


def china(day: Any, hour: int, minute: int) -> datetime:
    return datetime.combine(day, time(hour, minute), SHANGHAI)


def test_orders_in_both_directions_page_on_one_keyset_and_the_settlement_per_china_day_is_the_bills(
        roaming: Roaming) -> None:
    a, outbox = roaming.a, roaming.outbox()
    day1 = datetime.now(SHANGHAI).date() - timedelta(days=2)
    day2 = day1 + timedelta(days=1)
    # B's users on A's piles: one ends at 23:50 on day 1, one at 00:10 on day 2 (both 15:xx/16:xx UTC on day 1)
    trade1 = started(roaming, 11)
    settle(roaming, trade1, china(day1, 23, 50))
    trade2 = started(roaming, 12)
    settle(roaming, trade2, china(day2, 0, 10), (0, 0, 10_000, 0))
    started(roaming, 13)  # still charging: listed, not yet owed
    step(outbox)
    # A's drivers on B's piles: settled (then a differing second order, disputed), failed, charging
    t0 = china(day2, 11, 0)
    wallet_id = our_driver(a)
    settled = roam(a, wallet_id, 21, t0)
    a.ledger.roaming_accepted(settled.id, at=t0)
    a.ledger.roaming_charging(settled.id, at=t0, start_time=t0)
    order = dict(energy=123_456, service_fen=567, start_time=t0, end_time=china(day2, 12, 0), stop_reason=0)
    a.ledger.settle_roaming(settled.id, at=china(day2, 12, 1), electricity_fen=1_234, **order)
    disputed = a.ledger.settle_roaming(settled.id, at=china(day2, 12, 5), electricity_fen=9_333, **order)
    assert [d["reason"] for d in disputed.disputes] == [2] and disputed.bill["total_fen"] == 1_801
    failed = roam(a, wallet_id, 22, t0)
    a.ledger.roaming_failed(failed.id, at=t0, reason="the peer refused the start")
    charging = roam(a, wallet_id, 23, t0)
    a.ledger.roaming_charging(charging.id, at=t0, start_time=t0)
    wallet = a.ledger.wallet(wallet_id)  # what the settlement calls payable is what A's books owe B
    assert (wallet.balances[f"payable:{B_ID}"], wallet.holds) == (-1_801, {f"roam:{A_ID}{23:018d}": 5_000})
    roaming.views()

    api = Answers(roaming)
    pages, cursor = [], None
    while True:
        page = api.get(f"{PEERS}/{B_ID}/orders", limit=2, **({"cursor": cursor} if cursor else {}))
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    items = [item for page in pages for item in page]
    assert [len(p) for p in pages] == [2, 2, 2, 0]
    assert [i["seq"] for i in items] == sorted((i["seq"] for i in items), reverse=True)
    assert [(i["direction"], i["start_charge_seq"]) for i in items] == [
        ("as_customer", f"{A_ID}{23:018d}"), ("as_customer", f"{A_ID}{22:018d}"), ("as_customer", f"{A_ID}{21:018d}"),
        ("as_infrastructure", seq(13)), ("as_infrastructure", seq(12)), ("as_infrastructure", seq(11))]
    by_seq = {i["start_charge_seq"]: i for i in items}
    bill1, bill2 = a.ledger.session(trade1).bill, a.ledger.session(trade2).bill
    assert {k: by_seq[seq(11)][k] for k in ("trade_no", "state", "energy_kwh", "total_yuan", "electricity_yuan")} == {
        "trade_no": trade1, "state": "finished", "energy_kwh": "5.2345", "total_yuan": fen_to_yuan_str(bill1["total_fen"]),
        "electricity_yuan": fen_to_yuan_str(bill1["electricity_fen"])}
    assert (by_seq[seq(13)]["state"], by_seq[seq(13)]["total_yuan"]) == ("charging", None)
    mine = by_seq[f"{A_ID}{21:018d}"]
    assert {k: mine[k] for k in ("state", "energy_kwh", "electricity_yuan", "service_yuan", "total_yuan", "disputes",
                                 "driver_id", "trade_no")} == {
        "state": "settled", "energy_kwh": "12.3456", "electricity_yuan": "12.34", "service_yuan": "5.67",
        "total_yuan": "18.01", "disputes": 1, "driver_id": "driver-wang", "trade_no": None}
    assert by_seq[f"{A_ID}{22:018d}"]["state"] == "failed"
    assert by_seq[f"{A_ID}{23:018d}"]["state"] == "charging"
    cut = (t0 + timedelta(seconds=1)).isoformat()  # ours were requested at t0, B's users' now
    assert api.get(f"{PEERS}/{B_ID}/orders", to=cut)["items"] == items[:3]
    assert api.get(f"{PEERS}/{B_ID}/orders", **{"from": cut})["items"] == items[3:]
    api.get(f"{PEERS}/{B_ID}/orders", 422, cursor="bm90IGEgbnVtYmVy")
    api.get(f"{PEERS}/ZZZZZZZZZ/orders", 404)

    answer = api.get(f"{PEERS}/settlement", **{"from": day1.isoformat(), "to": day2.isoformat()})
    zero = {"orders": 0, "energy_kwh": "0.0000", "total_yuan": "0.00"}
    assert answer["items"] == [
        {"operator_id": B_ID, "day": day1.isoformat(), "payable": zero,
         "receivable": {"orders": 1, "energy_kwh": "5.2345", "total_yuan": fen_to_yuan_str(bill1["total_fen"])}},
        {"operator_id": B_ID, "day": day2.isoformat(),
         "payable": {"orders": 1, "energy_kwh": "12.3456", "total_yuan": "18.01"},
         "receivable": {"orders": 1, "energy_kwh": "1.0000", "total_yuan": fen_to_yuan_str(bill2["total_fen"])}}]
    schedule = Schedule(a.ledger, a.store)  # what A's daily check tells B it owes, day by day
    for item, day in zip(answer["items"], (day1, day2), strict=True):
        check = schedule.check(roaming.b_on_a.peer_id, day)
        assert (item["receivable"]["orders"], item["receivable"]["total_yuan"]) == (
            check.OrderCount, f"{check.TotalOrderMoney:.2f}")
    assert api.get(f"{PEERS}/settlement", **{"from": day2.isoformat(), "to": day2.isoformat()})["items"] == [
        answer["items"][1]]
    assert not any(secret in text for secret in secrets(roaming) for text in api.texts)

    # another tenant of A: nothing of it; an agent of A and a platform admin: refused
    other = Answers(roaming, tenant_id=roaming.other.tenant_id)
    assert other.get(PEERS)["items"] == []
    other.get(f"{PEERS}/{B_ID}/orders", 404)
    assert other.get(f"{PEERS}/settlement", **{"from": day1.isoformat(), "to": day2.isoformat()})["items"] == []
    for who in (Answers(roaming, AGENT, stations=[roaming.world.station_id]), Answers(roaming, PLATFORM_ADMIN)):
        for path in (PEERS, f"{PEERS}/{B_ID}/orders", f"{PEERS}/settlement"):
            assert who.get(path, 403)["code"] == "forbidden_role"
