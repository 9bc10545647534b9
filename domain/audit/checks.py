"""The checks: two while replaying (each reading's tier, each bill re-priced), the rest at the end.

Each function reads what an :class:`~domain.audit.replay.Audit` collected and appends a
:class:`~domain.audit.report.Difference` for everything that disagrees; :func:`report` runs the
end-of-replay checks in the order of ``CHECKS`` and builds the :class:`~domain.audit.report.AuditReport`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from domain.audit import roaming
from domain.audit.mirror import wallet_view
from domain.audit.report import CHECKS, AuditReport, Difference, EventRef
from domain.audit.stored import as_datetime, as_iso, plain
from domain.pricing import price
from domain.tariff import TariffSchedule
from domain.wallet import ARREARS, AVAILABLE, HELD, REFUND_PENDING, REVENUE_ELECTRICITY, REVENUE_SERVICE

Audit = Any  # domain.audit.replay.Audit: it calls these checks with itself, so they do not import it

GATEWAY_PROVIDERS = ("wechat", "alipay")  # top-ups through these need a verified payment notification
CLOSED_STATES = ("finished", "abandoned", "failed")
BILLED_STATES = ("finished", "abandoned")
ORDER_FIELDS = ("electricity_fen", "service_fen", "total_fen", "energy")


# ---- while replaying ------------------------------------------------------------------------------
def check_tier(audit: Audit, s: Any, app: str, oid: Any, version: int, a: dict[str, Any], nid: int) -> None:
    """The tier a reading's energy went to must be the one in force at its local time."""
    at = a["at"]
    at_iso = as_iso(at)
    key = (s.timezone, at_iso[:16]) if at_iso.endswith("+00:00") else None
    slot = audit.slot_cache.get(key) if key else None  # a UTC minute is in one local half hour
    if slot is None:
        local = as_datetime(at).astimezone(ZoneInfo(s.timezone))
        slot = local.hour * 2 + (1 if local.minute >= 30 else 0)
        if key:
            audit.slot_cache[key] = slot
    expected = schedule_of(audit, s).slots[slot]
    if a["tier"] != expected:
        audit.differences.append(Difference(
            "sessions_reprice", f"session {s.trade_no}: reading at {at_iso} put in tier {a['tier']}, "
            f"the tariff says {expected}", [EventRef(app, nid, str(oid), version, "ChargingSession.MeterRead")]))


def schedule_of(audit: Audit, s: Any) -> TariffSchedule:
    """The schedule of the session's tariff version, parsed once per version."""
    tariff = s.tariff
    key = (tariff["id"], tariff["version"])
    schedule = audit.tariff_schedules.get(key)
    if schedule is None:
        schedule = audit.tariff_schedules[key] = TariffSchedule.from_dict(plain(tariff["schedule"]))
    return schedule


def check_bill(audit: Audit, s: Any, name: str, a: dict[str, Any], ref: EventRef) -> None:
    """A bill (Settled, Resettled, Abandoned) re-priced with the tariff version the Tariffs log holds."""
    tariff = s.tariff
    history = audit.tariffs.get(UUID(tariff["id"]))
    kept = tariff["schedule"]  # ints and strings on both paths: compared as stored
    if history is None or not 1 <= tariff["version"] <= len(history):
        audit.differences.append(Difference("sessions_reprice", f"session {s.trade_no} names tariff "
                                            f"{tariff['id']} v{tariff['version']}, which the Tariffs log lacks",
                                            [ref]))
        schedule = schedule_of(audit, s)
    elif history[tariff["version"] - 1] != kept:
        audit.differences.append(Difference("sessions_reprice", f"session {s.trade_no} kept a schedule that "
                                            f"differs from tariff v{tariff['version']}", [ref]))
        schedule = TariffSchedule.from_dict(history[tariff["version"] - 1])
    else:
        schedule = schedule_of(audit, s)
    if name == "ChargingSession.Abandoned":
        energy = list(s.tier_energy)  # the mirror/aggregate is at this event: measured energy so far
        expected = price(energy, schedule).as_dict()
    else:
        record = a["record"]
        expected = price(record["tier_energy"], schedule).as_dict()
        difference = record["pile_total_amount"] - expected["total_fen"] * 100
        if a["pile_difference"] != difference:
            audit.differences.append(Difference("sessions_reprice", f"session {s.trade_no}: pile difference "
                                                f"{a['pile_difference']} recorded, {difference} recomputed", [ref]))
    if a["bill"] != expected:
        audit.differences.append(Difference(
            "sessions_reprice", f"session {s.trade_no}: bill {_amounts(a['bill'])} recorded, "
            f"{_amounts(expected)} re-priced with tariff v{tariff['version']}", [ref],
            {"recorded": plain(a["bill"]), "repriced": expected}))


# ---- at the end -------------------------------------------------------------------------------------
def report(audit: Audit, live_wallet: Callable[[UUID, int], Any] | None,
           snapshots: Mapping[tuple[Any, int], Any] | None, orders: Mapping[str, Mapping[str, Any]] | None,
           revenue: Mapping[str, int] | None) -> AuditReport:
    """Run the end-of-replay checks (see :meth:`domain.audit.replay.Audit.report`)."""
    checks: dict[str, dict[str, Any]] = {}
    differences = list(audit.differences)

    def done(check: str, checked: int, status: str | None = None) -> None:
        found = sum(1 for d in differences if d.check == check)
        checks[check] = {"status": status or ("ok" if not found else "differences"), "checked": checked,
                         "differences": found}

    done("posting_sets_balance", audit.posting_sets)
    if sum(audit.accounts.values()):
        differences.append(Difference("trial_balance", f"trial balance is {sum(audit.accounts.values())} fen, "
                                      "not zero", [], {"accounts": dict(audit.accounts)}))
    done("trial_balance", len(audit.accounts))
    compared = _wallets_equal_live(audit, live_wallet, snapshots, differences)
    done("wallets_equal_live", compared, None if live_wallet is not None or snapshots is not None else "unavailable")
    done("sessions_reprice", sum(len(v) for v in audit.settlement_refs.values()))
    by_trade = {s.trade_no: (sid, s) for sid, s in audit.sessions.items()}
    done("sessions_match_wallets", _sessions_match_wallets(audit, by_trade, differences))
    done("roaming_match_wallets", roaming.match_wallets(audit, differences))
    if orders is not None:
        done("sessions_match_orders", _sessions_match_orders(audit, by_trade, orders, differences))
    else:
        done("sessions_match_orders", 0, "unavailable")
    done("holds_closed", _holds_closed(audit, by_trade, differences))
    _topups_match_payments(audit, differences)
    done("topups_match_payments", len(audit.topups), None if audit.payments_seen else "unavailable")
    done("refunds_closed", _refunds_closed(audit, differences))

    states = Counter(s.state for s in audit.sessions.values())
    billed = [s.bill for s in audit.sessions.values() if s.bill and s.state in BILLED_STATES]
    totals = {
        "billed_electricity_fen": sum(b["electricity_fen"] for b in billed),
        "billed_service_fen": sum(b["service_fen"] for b in billed),
        "billed_energy": sum(b["energy"] for b in billed),
        "revenue_electricity_fen": -audit.accounts.get(REVENUE_ELECTRICITY, 0),
        "revenue_service_fen": -audit.accounts.get(REVENUE_SERVICE, 0),
    }
    if revenue is not None:
        for key in ("electricity_fen", "service_fen", "energy"):
            if revenue.get(key, 0) != totals[f"billed_{key}"]:
                differences.append(Difference(
                    "totals_match_revenue", f"the revenue view has {key} {revenue.get(key, 0)}, the sessions' "
                    f"bills add up to {totals[f'billed_{key}']}", [], {"view": dict(revenue)}))
        done("totals_match_revenue", len(billed))
    else:
        done("totals_match_revenue", 0, "unavailable")
    return AuditReport(
        counts={"events": dict(audit.events), "total_events": sum(audit.events.values()),
                "by_type": dict(sorted(audit.topics.items())), "wallets": len(audit.wallets),
                "sessions": len(audit.sessions), "sessions_by_state": dict(states),
                "posting_sets": audit.posting_sets, "tariffs": len(audit.tariffs),
                "payments": len(audit.payments), **roaming.counts(audit)},
        accounts={k: v for k, v in sorted(audit.accounts.items())},
        period={"from": audit.from_iso, "to": audit.to_iso, "posting_sets": audit.period_posting_sets,
                "movements": {k: list(v) for k, v in sorted(audit.movements.items())}},
        totals=totals, checks={name: checks[name] for name in CHECKS}, differences=differences,
        tenant=str(audit.tenant) if audit.tenant else None,
    )


def _wallets_equal_live(audit: Audit, live_wallet: Callable[[UUID, int], Any] | None,
                        snapshots: Mapping[tuple[Any, int], Any] | None, differences: list[Difference]) -> int:
    compared = 0
    for wallet_id, w in audit.wallets.items():
        view = wallet_view(w)
        owed = [-view["balances"].get(a, 0) for a in (AVAILABLE, HELD, REFUND_PENDING)]
        if min(owed) < 0 or view["balances"].get(ARREARS, 0) < 0:
            differences.append(Difference("wallets_equal_live", f"wallet {wallet_id} replays to a negative "
                                          "balance", [audit.wallet_refs[wallet_id]], view))
        if live_wallet is not None:
            compared += 1
            live = live_wallet(wallet_id, w.version)
            live_view = wallet_view(live) if live is not None else None
            if live_view != view:
                differences.append(Difference(
                    "wallets_equal_live", f"wallet {wallet_id} replays to {view['balances']} but the Wallets "
                    f"Application has {live_view['balances'] if live_view else 'nothing'} at version {w.version}",
                    [audit.wallet_refs[wallet_id]], {"replayed": view, "live": live_view}))
    for (wallet_id, version), snapshot in (snapshots or {}).items():
        replayed = audit.captured.get((wallet_id, version))
        if replayed is None:
            continue  # a snapshot past the end of this replay (--to)
        compared += 1
        stored = wallet_view(snapshot)
        if stored != replayed:
            differences.append(Difference(
                "wallets_equal_live", f"wallet {wallet_id}: its snapshot at version {version} has "
                f"{stored['balances']}, its events replay to {replayed['balances']}",
                [audit.wallet_refs[wallet_id]], {"replayed": replayed, "snapshot": stored}))
    return compared


Sessions = dict[str, tuple[Any, Any]]  # trade serial -> (session id, replayed session)


def _sessions_match_wallets(audit: Audit, by_trade: Sessions, differences: list[Difference]) -> int:
    checked = 0
    for trade, (sid, s) in by_trade.items():
        if s.wallet_id is None:
            continue
        checked += 1
        bill = s.bill if s.state in BILLED_STATES else None
        expected = [bill["electricity_fen"], bill["service_fen"]] if bill else [0, 0]
        got = list(audit.revenue_by_trade.get(trade, [0, 0]))
        if got != expected:
            differences.append(Difference(
                "sessions_match_wallets", f"session {trade} ({s.state}) bills electricity {expected[0]} + "
                f"service {expected[1]} fen; its wallet took {got[0]} + {got[1]}",
                audit.settlement_refs.get(sid, [])[-1:] + audit.revenue_refs.get(trade, [])))
    for trade, refs in audit.revenue_refs.items():
        if trade not in by_trade:
            differences.append(Difference("sessions_match_wallets", f"revenue posted for trade {trade}, "
                                          "which no session has", refs))
    return checked


def _sessions_match_orders(audit: Audit, by_trade: Sessions, orders: Mapping[str, Mapping[str, Any]],
                           differences: list[Difference]) -> int:
    checked = 0
    for trade, (sid, s) in by_trade.items():
        row = orders.get(trade)
        if row is None:
            differences.append(Difference("sessions_match_orders", f"session {trade} has no order row",
                                          audit.settlement_refs.get(sid, [])[-1:]))
            continue
        checked += 1
        diffs = _order_differences(s, row)
        if diffs:
            differences.append(Difference(
                "sessions_match_orders", f"order {trade} differs from its session: "
                + ", ".join(f"{k} {o!r} in the order view, {e!r} replayed" for k, (o, e) in diffs.items()),
                audit.settlement_refs.get(sid, [])[-1:], {"fields": {k: list(v) for k, v in diffs.items()}}))
    for trade in orders:
        if trade not in by_trade:
            differences.append(Difference("sessions_match_orders", f"order {trade} has no session in the event store"))
    return checked


def _order_differences(s: Any, row: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields of an order row that differ from the replayed session (only the fields the row has)."""
    bill = s.bill if s.state in BILLED_STATES and s.bill else None
    expected: dict[str, Any] = {"state": s.state}
    if bill is not None:
        expected.update({k: bill[k] for k in ORDER_FIELDS})
    return {k: (row[k], v) for k, v in expected.items() if k in row and row[k] != v}


def _holds_closed(audit: Audit, by_trade: Sessions, differences: list[Difference]) -> int:
    checked = 0
    roaming_holds = []  # a roaming charge's hold (roam:<seq>): domain/audit/roaming.py
    for wallet_id, w in audit.wallets.items():
        for hold_id, amount in w.holds.items():
            if roaming.is_roaming(hold_id):
                roaming_holds.append((wallet_id, hold_id, amount))
                continue
            checked += 1
            entry = by_trade.get(hold_id)
            if entry is None or entry[1].state in CLOSED_STATES:
                differences.append(Difference(
                    "holds_closed", f"hold {hold_id} of {amount} fen is still open on wallet {wallet_id} "
                    f"although its session is {entry[1].state if entry else 'unknown'}",
                    [audit.wallet_refs[wallet_id]] + (audit.settlement_refs.get(entry[0], []) if entry else [])))
    for trade, (sid, s) in by_trade.items():
        if s.wallet_id is not None and s.hold_fen and trade not in audit.holds_placed:
            differences.append(Difference("holds_closed", f"session {trade} names a hold of {s.hold_fen} fen "
                                          "that its wallet never placed", audit.settlement_refs.get(sid, [])))
    return checked + len(by_trade) + roaming.holds_closed(audit, roaming_holds, differences)


def _topups_match_payments(audit: Audit, differences: list[Difference]) -> None:
    credited: set[str] = set()
    for ref, wallet_id, t in audit.topups:
        if t["provider"] not in GATEWAY_PROVIDERS:
            continue  # operator and cash top-ups are adjustments that need no notification
        if not audit.payments_seen:
            continue
        payment = audit.payments.get(t["payment_ref"])
        if payment is None or payment["paid_fen"] is None:
            differences.append(Difference(
                "topups_match_payments", f"top-up {t['key']} of {t['amount']} fen via {t['provider']} has no "
                f"verified payment notification for {t['payment_ref']!r}",
                [ref] + (payment["refs"] if payment else [])))
            continue
        credited.add(t["payment_ref"])
        wrong = {k: (v, e) for k, v, e in (
            ("amount_fen", t["amount"], payment["paid_fen"]), ("ordered_fen", t["amount"], payment["amount_fen"]),
            ("wallet", wallet_id, payment["wallet_id"]), ("provider", t["provider"], payment["provider"]),
            ("key", t["key"], f"topup:{t['payment_ref']}")) if v != e}
        if wrong:
            differences.append(Difference(
                "topups_match_payments", f"top-up {t['key']} differs from payment {t['payment_ref']}: "
                + ", ".join(f"{k} {v} vs {e}" for k, (v, e) in wrong.items()), [ref] + payment["refs"]))
    for out_trade_no, payment in audit.payments.items():
        if payment["paid_fen"] is not None and out_trade_no not in credited:
            differences.append(Difference("topups_match_payments", f"payment {out_trade_no} was paid "
                                          f"({payment['paid_fen']} fen) but never credited to a wallet",
                                          payment["refs"]))


def _refunds_closed(audit: Audit, differences: list[Difference]) -> int:
    checked = 0
    horizon = datetime.fromisoformat(audit.horizon) if audit.horizon else None
    for wallet_id, w in audit.wallets.items():
        for refund_id, refund in w.refunds.items():
            checked += 1
            if refund["state"] == "requested":
                stamp, ref = audit.refund_requested_at[(wallet_id, refund_id)]
                if horizon is None or horizon - datetime.fromisoformat(stamp) >= audit.refund_grace:
                    differences.append(Difference(
                        "refunds_closed", f"refund {refund_id} of {refund['amount']} fen on wallet {wallet_id} "
                        f"requested {stamp} is neither completed nor failed", [ref]))
    return checked


def _amounts(bill: Mapping[str, Any]) -> str:
    return f"{bill['electricity_fen']} + {bill['service_fen']} fen"
