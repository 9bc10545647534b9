"""What the ledger says a pile is owed: the frames a session or a pile command calls for, from stored state.

The gateway sends a pile a command frame only when these functions, given what it read from the
store (never the body of a NATS message), say the pile is owed it. They are pure, so the same answer
serves a command that just arrived and, later, the commands to send again to a pile that logs in.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from pile_link.link import parameters_frame, reboot_frame, start_frame, stop_frame
from pile_link.ykc import Message, ReadRealtime

PLATFORM_ORIGINS = frozenset({"app", "commissioning"})  # starts the platform asks a pile for (0x34)


def owed_for_session(session: Any, now: datetime) -> list[Message]:
    """0x34 for a platform start that waits for its pile (``requested``, before its start deadline),
    0x36 for a session ``stopping``; nothing for any other session."""
    if session.state == "requested" and session.origin in PLATFORM_ORIGINS:
        if session.deadline is not None and now >= session.deadline:
            return []  # too late: the watchdog fails it
        return [start_frame(session.pile_no, session.gun_no, session.trade_no, session.hold_fen)]
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
