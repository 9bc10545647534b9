"""What one order's page shows beyond its row of the orders view: the bill per tier, the timeline with
the wallet's follow-through, and the refunds asked for from the page.

* **Bill per tier**: the tier energies of the orders view, priced by ``domain.pricing.price`` with the
  schedule of the tariff version the session started with (read from the ledger through the API's
  ``check_tariff``, as ``GET /operator/v1/tariffs/{id}`` reads it). The exact amount per tier is
  shown (1e-9 yuan, unrounded); the fees are rounded once, on each total, as the bill was.
* **Timeline**: the view's own steps (ordered, requested, started, fault, stop requested, stopped,
  settled, re-priced ...) in time order, a readings summary (the view's counts) after the start,
  and what the bill meant for the wallet (``domain.settlement.bill_from_hold``: captured from the
  hold, the rest released, any excess charged), each marked done once the wallet has run that
  command (its idempotency key is in the wallet's outcomes; read through ``Ledger.wallet``, as the
  API's refund command reads it). A re-priced order shows its re-pricing step instead: what the
  wallet then moved depends on the bill before it, which the view does not keep.
* **Refunds**: an operator's refund from the page is the API's refund command with the refund id
  ``<trade no>-<n>`` (n counts the page's requests), so asking twice from the same form makes no
  second refund, and the page finds its refunds again (``PaymentService.refunds_requested``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request

from adapters.api.shards import ledger_of
from adapters.api.auth import Principal
from adapters.api.operator.deps import check_tariff
from domain.errors import NotFound
from domain.money import fixed_point_str
from domain.pricing import Bill, price
from domain.settlement import bill_from_hold
from domain.tariff import TIERS

MAX_REFUNDS = 20  # refund requests one order's page makes and lists


def exact_yuan(nano: int) -> str:
    """An exact amount in 1e-9 yuan as yuan, with 2 to 9 decimals: 1234500000 -> '1.2345'."""
    text = fixed_point_str(nano, 9)
    while text.endswith("0") and len(text.split(".")[1]) > 2:
        text = text[:-1]
    return text


def billed(order: dict[str, Any]) -> bool:
    return order["total_fen"] is not None


def bill_of(request: Request, who: Principal, order: dict[str, Any]) -> Bill | None:
    """The order's bill per tier, priced as the ledger priced it (None before it is billed)."""
    if not billed(order):
        return None
    schedule = check_tariff(request, who, order["tariff_id"]).schedule_at(order["tariff_version"])
    return price([order[f"energy_{tier}"] for tier in TIERS], schedule)


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _at(step: dict[str, Any]) -> datetime:
    at = step.get("at")
    return datetime.fromisoformat(at) if isinstance(at, str) else EPOCH


def timeline(order: dict[str, Any]) -> list[dict[str, Any]]:
    """The view's steps in time order (ties keep the view's order), with the readings summary after the start."""
    steps = sorted((dict(s) for s in order["timeline"]), key=_at)
    started = next((i for i, s in enumerate(steps) if s["step"] == "started"), None)
    if order["readings"] or started is not None:
        summary = {"step": "readings", "readings": order["readings"], "anomalies": order["anomalies"],
                   "energy": order["energy"]}
        steps.insert(len(steps) if started is None else started + 1, summary)
    return steps


def wallet_steps(request: Request, order: dict[str, Any]) -> list[dict[str, Any]]:
    """What the bill meant for the driver's wallet, and whether the wallet has done it yet."""
    if not billed(order) or order["wallet_id"] is None or any(s["step"] == "resettled" for s in order["timeline"]):
        return []
    try:
        wallet = ledger_of(request).wallet(order["wallet_id"])
    except NotFound:
        return []
    hold = next((s.get("hold_fen") or 0 for s in order["timeline"] if s["step"] == "ordered"), 0)
    steps = []
    for command in bill_from_hold(order["trade_no"], hold, order):
        amount = command.arguments["electricity"] + command.arguments["service"]
        done = command.arguments["key"] in wallet.outcomes
        steps.append({"step": "captured" if command.name == "capture" else "charged", "fen": amount, "done": done})
        if command.name == "capture":
            steps.append({"step": "released", "fen": hold - amount, "done": done})
    return steps


def refund_id(order: dict[str, Any], n: int) -> str:
    return f"{order['trade_no']}-{n}"


def refunds(request: Request, order: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The refunds asked for from this order's page (each request's refunds as they stand now) and the
    number the next request will carry."""
    payments = getattr(request.app.state, "payments", None)
    if payments is None or not order["driver_id"]:
        return [], 1
    asked = []
    for n in range(1, MAX_REFUNDS + 1):
        made = payments.refunds_requested(order["tenant_id"], order["driver_id"], refund_id(order, n))
        if not made:
            return asked, n
        asked.append({"n": n, "refunds": made, "fen": sum(r.amount_fen for r in made)})
    return asked, MAX_REFUNDS + 1


def refundable(request: Request, order: dict[str, Any]) -> bool:
    """Whether the page offers a refund: a driver to refund and payment channels to refund through."""
    return bool(order["driver_id"]) and getattr(request.app.state, "payments", None) is not None
