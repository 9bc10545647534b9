"""What a session's outcome means for the driver's wallet: a pure policy.

Given a session event, returns the wallet commands (:class:`WalletCommand`: the command's name and
its keyword arguments) that bring the wallet in line with it. The names are stored (the watchdog's
``wallet_followups`` rows) and run through the one registry of stored names,
:data:`domain.use_cases.core.WALLET_COMMANDS`. Each command's idempotency key is derived from the trade serial and the
kind of event, so running the policy twice, or after a crash between the session commit and the
wallet commit, changes nothing the second time.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class WalletCommand(NamedTuple):
    """A wallet command by its stored name (a key of ``WALLET_COMMANDS``) and keyword arguments."""

    name: str
    arguments: dict[str, Any]


def release_hold(trade_no: str) -> WalletCommand:
    """Give back a start's whole hold (a failed start, a hold whose session never opened)."""
    return WalletCommand("release", {"key": f"release:{trade_no}", "hold_id": trade_no})


def wallet_commands(session: Any, event_name: str, event: Any) -> list[WalletCommand]:
    """The wallet commands for one session event (``session`` is the aggregate after the event)."""
    trade_no = session.trade_no
    if session.wallet_id is None:
        return []
    if event_name == "Failed":
        return [release_hold(trade_no)] if session.hold_fen else []
    if event_name in ("Settled", "Abandoned"):
        return bill_from_hold(trade_no, session.hold_fen, event.bill)
    if event_name == "Resettled":
        return rebill(trade_no, event.previous_bill, event.bill)
    return []


def bill_from_hold(trade_no: str, hold_fen: int, bill: dict[str, Any]) -> list[WalletCommand]:
    """Capture the bill from the session's hold; what the hold cannot cover is charged directly."""
    electricity, service = bill["electricity_fen"], bill["service_fen"]
    if not hold_fen:
        return [WalletCommand("charge", {"key": f"charge:{trade_no}", "electricity": electricity, "service": service,
                            "reference": trade_no})]
    from_hold_e = min(electricity, hold_fen)
    from_hold_s = min(service, hold_fen - from_hold_e)
    commands: list[WalletCommand] = [WalletCommand("capture", {"key": f"capture:{trade_no}", "hold_id": trade_no,
                                                  "electricity": from_hold_e, "service": from_hold_s})]
    if (electricity - from_hold_e) or (service - from_hold_s):
        commands.append(WalletCommand("charge", {"key": f"charge:{trade_no}", "electricity": electricity - from_hold_e,
                                    "service": service - from_hold_s, "reference": trade_no}))
    return commands


def rebill(trade_no: str, previous: dict[str, Any] | None, bill: dict[str, Any]) -> list[WalletCommand]:
    """A re-priced session: charge what the new bill adds, give back what it takes away."""
    prev_e = previous["electricity_fen"] if previous else 0
    prev_s = previous["service_fen"] if previous else 0
    de, ds = bill["electricity_fen"] - prev_e, bill["service_fen"] - prev_s
    commands: list[WalletCommand] = []
    if de > 0 or ds > 0:
        commands.append(WalletCommand("charge", {"key": f"rebill-charge:{trade_no}", "electricity": max(de, 0),
                                    "service": max(ds, 0), "reference": trade_no}))
    if de < 0 or ds < 0:
        commands.append(WalletCommand("credit_back", {"key": f"rebill-credit:{trade_no}", "electricity": max(-de, 0),
                                         "service": max(-ds, 0), "reference": trade_no}))
    return commands
