"""Our drivers' roaming charges in the audit: what a charge on a peer's pile owes, and what its wallet paid.

A roaming charge (:mod:`domain.roaming`) holds ``roam:<StartChargeSeq>`` on its driver's wallet and
pays the peer's order to ``payable:<peer>`` with the keys ``capture:roam:<seq>`` (from the hold) and
``charge:roam:<seq>`` (beyond it). None of it is revenue: those keys are taken out of the sessions'
revenue check (:meth:`domain.audit.replay.Audit._wallet_event`) and checked here instead:

* ``roaming_match_wallets``: per charge, what its wallet posted to ``payable:<its peer>`` equals its
  bill (zero while open and when failed); a payable posting to another account, or a
  ``capture:roam:``/``charge:roam:`` key no charge of that wallet has, is a difference;
* ``holds_closed`` (with the sessions'): a ``roam:`` hold still open belongs to a charge still open;
  every charge placed its hold.

Charges are joined to wallet postings by (wallet, StartChargeSeq): the seq is ours, the wallet the
charge names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from domain.audit.mirror import ROAMING_CHANGES, RoamingMirror
from domain.audit.report import Difference, EventRef
from domain.roaming import HOLD, OPEN_STATES
from domain.wallet import PAYABLE

Audit = Any  # domain.audit.replay.Audit, which calls these with itself
REQUESTED = "RoamingCharge.Requested"


def requested(audit: Audit, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
    audit._stamp(a)
    audit.roaming_refs[oid].append(EventRef(app, nid, str(oid), version, name))
    if audit.fast:
        audit.roaming[oid] = RoamingMirror(oid, a)


def changed(audit: Audit, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
    """A roaming charge event after Requested."""
    audit._stamp(a)
    audit.roaming_refs[oid].append(EventRef(app, nid, str(oid), version, name))
    if audit.fast:
        ROAMING_CHANGES[name](audit.roaming[oid], a)


HANDLERS = {REQUESTED: requested, **{name: changed for name in ROAMING_CHANGES if name != REQUESTED}}
"""The audit's handler of each RoamingCharge event, by name."""


def is_roaming(trade: str) -> bool:
    """Whether the part of a wallet key after its kind (``capture:<this>``) names a roaming charge."""
    return trade.startswith(HOLD)


def payable_posted(audit: Audit, wallet_id: Any, hold: str, a: dict[str, Any], ref: EventRef) -> None:
    """A wallet event keyed ``<kind>:roam:<seq>``: what it posted to payable accounts, kept per charge."""
    paid = audit.payables.setdefault((wallet_id, hold), {"accounts": Counter(), "refs": []})
    for account, amount in a.get("postings") or ():
        if account.startswith(PAYABLE):
            paid["accounts"][account] -= amount
    paid["refs"].append(ref)


def match_wallets(audit: Audit, differences: list[Difference]) -> int:
    """``roaming_match_wallets``: every charge's payable postings equal its bill. Returns charges checked."""
    charged = set()
    for oid, r in audit.roaming.items():
        key = (r.wallet_id, f"{HOLD}{r.start_charge_seq}")
        charged.add(key)
        paid = audit.payables.get(key, {"accounts": Counter(), "refs": []})
        owed = r.bill["total_fen"] if r.state == "settled" and r.bill else 0
        expected = {f"{PAYABLE}{r.peer}": owed} if owed else {}
        got = {k: v for k, v in paid["accounts"].items() if v}
        if got != expected:
            differences.append(Difference(
                "roaming_match_wallets", f"roaming charge {r.start_charge_seq} ({r.state}) owes {r.peer} "
                f"{owed} fen; its wallet posted {got or 'nothing'} to payable accounts",
                audit.roaming_refs[oid][-1:] + paid["refs"], {"expected": expected, "posted": got}))
    for (wallet_id, hold), paid in audit.payables.items():
        if (wallet_id, hold) not in charged:
            differences.append(Difference("roaming_match_wallets", f"wallet {wallet_id} paid a peer for {hold}, "
                                          "which no roaming charge of that wallet has", paid["refs"]))
    return len(audit.roaming)


def holds_closed(audit: Audit, open_holds: Iterable[tuple[UUID, str, int]], differences: list[Difference]) -> int:
    """Part of ``holds_closed``: the open ``roam:`` holds ``(wallet, hold id, fen)`` belong to open
    charges, and every charge placed its hold. Returns what it checked."""
    charges = {(r.wallet_id, f"{HOLD}{r.start_charge_seq}"): (oid, r) for oid, r in audit.roaming.items()}
    checked = 0
    for wallet_id, hold, amount in open_holds:
        checked += 1
        oid, r = charges.get((wallet_id, hold), (None, None))
        if r is None or r.state not in OPEN_STATES:
            differences.append(Difference(
                "holds_closed", f"hold {hold} of {amount} fen is still open on wallet {wallet_id} although its "
                f"roaming charge is {r.state if r else 'unknown'}",
                [audit.wallet_refs[wallet_id]] + (audit.roaming_refs[oid][-1:] if r else [])))
    for oid, r in audit.roaming.items():
        if f"{HOLD}{r.start_charge_seq}" not in audit.holds_placed:
            differences.append(Difference("holds_closed", f"roaming charge {r.start_charge_seq} names a hold of "
                                          f"{r.hold_fen} fen that its wallet never placed",
                                          audit.roaming_refs[oid][:1]))
    return checked + len(audit.roaming)


def counts(audit: Audit) -> dict[str, Any]:
    """The report's counts of roaming charges, and the total their settled bills owe the peers."""
    settled = [r.bill["total_fen"] for r in audit.roaming.values() if r.state == "settled" and r.bill]
    return {"roaming_charges": len(audit.roaming),
            "roaming_by_state": dict(Counter(r.state for r in audit.roaming.values())),
            "roaming_billed_fen": sum(settled)}
