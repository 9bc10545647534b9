"""What the ledger says a pile is owed: the frames a session or a pile command calls for, from stored state.

The gateway sends a pile a command frame only when these functions, given what it read from the
store (never the body of a NATS message), say the pile is owed it. They are pure, so the same answer
serves a command that just arrived and the commands to send again to a pile that logs in, or to every
pile after the gateway followed NATS again (:meth:`pile_link.delivery.OwedDelivery.deliver_owed`).

A command is owed until the pile acknowledges it or it no longer applies: a platform start while its
session is ``requested`` and its start deadline has not passed (after it, the watchdog fails the
session and releases its hold), a stop while the session is ``stopping``, a tariff push while the
pile's confirmed billing model is not the tariff version in force (``Ledger.tariff_owed``).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from pile_link.downlink import parameters_frame, reboot_frame, start_frame, stop_frame
from pile_link.link import GunReport
from pile_link.ykc import Message, ReadRealtime

PLATFORM_ORIGINS = frozenset({"app", "commissioning", "tcec"})  # starts the platform asks a pile for (0x34)
COMMISSIONING_BALANCE_FEN = 100_00  # the balance a commissioning start (no wallet) tells the pile, in fen
# A start for a T/CEC customer platform's user holds nothing: the platform pays on account (its
# receivable, docs/interconnect.md). The pile is told this balance, the most one such session may cost.
ROAMING_BALANCE_FEN = 1000_00


def owed_for_session(session: Any, now: datetime, commissioning_balance_fen: int = COMMISSIONING_BALANCE_FEN,
                     report: GunReport | None = None) -> list[Message]:
    """0x34 for a platform start that waits for its pile (``requested``, before its start deadline),
    0x36 for a session ``stopping``; nothing for any other session.

    The start tells the pile the money held as its balance; a commissioning start holds nothing (no
    wallet), and is given ``commissioning_balance_fen`` so a pile that refuses to start on an empty
    balance still starts; a T/CEC start (a partner pays on account) is given ``ROAMING_BALANCE_FEN``. Given the gun's ``report`` on this connection: a gun charging another
    session is owed neither (0x36 names no session: it would stop that one; a start would be
    refused as busy)."""
    if report is not None and report.charging_another(session.trade_no):
        return []
    if session.state == "requested" and session.origin in PLATFORM_ORIGINS:
        if session.deadline is not None and now >= session.deadline:
            return []  # too late: the watchdog fails it
        balance = {"commissioning": commissioning_balance_fen, "tcec": ROAMING_BALANCE_FEN}.get(session.origin,
                                                                                             session.hold_fen)
        return [start_frame(session.pile_no, session.gun_no, session.trade_no, balance)]
    if session.state == "stopping":
        return [stop_frame(session.pile_no, session.gun_no)]
    return []


def owed_for_command(pile_no: str, command: str, params: dict[str, Any], guns: Collection[int]) -> list[Message]:
    """The frames a stored ``Pile.CommandRequested`` calls for (a tariff push is sent by the link,
    once the pile is idle, from the stored tariff: :meth:`PileLink.push_tariff_when_idle`)."""
    if command == "reboot":
        return [reboot_frame(pile_no, params)]
    if command == "set_parameters":
        return [parameters_frame(pile_no, params)]
    if command == "read_realtime":
        wanted = [params["gun_no"]] if "gun_no" in params else sorted(guns)
        return [ReadRealtime(pile_no, f"{gun:02d}") for gun in wanted if gun in guns]
    return []
