"""The pile link's boundary: every frame a pile sends is bound to the pile that logged in on its connection.

One rule, checked where frames enter (:meth:`pile_link.link.PileLink.dispatch`, before any handler):

* a frame naming a pile number is refused unless it names the connection's pile (``other_pile``);
* a frame naming a gun is refused unless the gun byte is BCD and one of the pile's guns, as the
  registry's ``Pile`` has them (``unknown_gun``);
* a frame carrying a trade serial (other than the all-zero "no session") is refused unless the serial
  starts with the connection's pile number (``foreign_session``). Every serial is composed as pile (14)
  + gun (2) + time (12) + sequence (4): the platform's for its starts, the charger's for its offline
  ones, and every verified frame in the protocol note follows it.

What the frame alone cannot show, whether the session a serial names is this pile's *gun's*, the
ledger checks on the session it loads (each session use case given ``sent_by=PileGun(...)``, e.g.
``Ledger.mark_charging``, ``Ledger.settle(..., pile_no, gun_no)``, the readings batch); its ``WrongPile`` is refused the same
way (``foreign_session``).

A refusal changes nothing, is answered as the protocol says (0x40 "invalid" for a 0x3B, 0x32
"refused" for a 0x31, nothing for anything else), counted (``gateway.stats``), logged, and reported
on the offending pile as ``Pile.FrameRefused``, at most one event per pile and kind a minute with the
count of the refusals it stands for (:class:`RefusalThrottle`); the alarms view raises it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pile_link.ykc import (
    Message,
    StartAuthReply,
    StartRequest,
    TransactionConfirm,
    TransactionRecord,
)

NO_TRADE = "0" * 32  # a 0x13 of an idle gun carries no session
GUN_NUMBERS = {f"{n:02d}": n for n in range(1, 100)}  # a gun byte that is BCD, as the codec decodes it
REFUSED_WINDOW = 60.0  # seconds: at most one Pile.FrameRefused per pile and kind in this window
NOT_AT_THIS_PILE = 6  # 0x32 fail reason: "account may not charge at this pile"

KINDS = ("other_pile", "unknown_gun", "foreign_session")

# How the protocol answers a frame the platform will not take: a record gets its 0x40 "invalid bill"
# (the pile stops resending it), a start request its 0x32 "refused"; anything else gets no answer.
REFUSAL_ANSWERS: dict[type[Message], Callable[[Any], Message]] = {
    TransactionRecord: lambda m: TransactionConfirm(m.trade_no, 1),
    StartRequest: lambda m: StartAuthReply(NO_TRADE, m.pile_no, m.gun_no, "0" * 16, 0, 0, NOT_AT_THIS_PILE),
}


@dataclass(frozen=True)
class Refusal:
    kind: str  # one of KINDS
    detail: str


def gun_number(gun_byte: str) -> int | None:
    """The gun a frame's BCD gun byte names (1-99), or None for a byte that is not a BCD gun number."""
    return GUN_NUMBERS.get(gun_byte)


def binding_refusal(msg: Message, pile_no: str, guns: Collection[int]) -> Refusal | None:
    """Why a frame from the connection of pile ``pile_no`` (with guns ``guns``) is refused, or None.

    The fields are read by name because every message class that has them calls them so; a class
    without one has nothing to check for it."""
    named = getattr(msg, "pile_no", pile_no)
    if named != pile_no:
        return Refusal("other_pile", f"names pile {named}")
    gun_byte = getattr(msg, "gun_no", None)
    if gun_byte is not None and gun_number(gun_byte) not in guns:
        return Refusal("unknown_gun", f"names gun {gun_byte}")
    trade_no = getattr(msg, "trade_no", NO_TRADE)
    if trade_no != NO_TRADE and not trade_no.startswith(pile_no):
        return Refusal("foreign_session", f"names serial {trade_no}")
    return None


def refusal_answer(msg: Message) -> Message | None:
    answer = REFUSAL_ANSWERS.get(type(msg))
    return answer(msg) if answer is not None else None


@dataclass
class Pending:
    """Refusals of one pile and kind not yet written, and when the last event of theirs was."""

    last_written: float
    count: int = 0
    frame_type: int = 0
    detail: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class RefusedFrames:
    """What one ``Pile.FrameRefused`` event says."""

    pile_no: str
    kind: str
    frame_type: int
    detail: str
    count: int
    at: datetime


@dataclass
class RefusalThrottle:
    """At most one ``Pile.FrameRefused`` per pile and kind per ``window`` seconds; the refusals in
    between are counted into the next one, written when the window has passed (at the next refusal
    or sweep) or when the pile's connection closes. Counts only, in memory: a gateway that crashes
    loses at most a minute of counts, never a refusal (those are in the log and the stats)."""

    window: float = REFUSED_WINDOW
    pending: dict[tuple[str, str], Pending] = field(default_factory=dict)

    def note(self, pile_no: str, kind: str, frame_type: int, detail: str, at: datetime,
             now: float) -> list[RefusedFrames]:
        """Count one refusal; returns the events to write now (the first of a window, or the last window's)."""
        entry = self.pending.get((pile_no, kind))
        if entry is None:
            self.pending[(pile_no, kind)] = Pending(last_written=now)
            return [RefusedFrames(pile_no, kind, frame_type, detail[:200], 1, at)]
        entry.count += 1
        entry.frame_type, entry.detail, entry.at = frame_type, detail[:200], at
        return self.due(now, only=[(pile_no, kind)])

    def due(self, now: float, only: Collection[tuple[str, str]] | None = None) -> list[RefusedFrames]:
        """The counted refusals whose window has passed."""
        keys = list(self.pending) if only is None else only
        return [self._take(key, now) for key in keys
                if self.pending[key].count and now - self.pending[key].last_written >= self.window]

    def flush(self, pile_no: str | None = None) -> list[RefusedFrames]:
        """Every counted refusal (of one pile, or of all), whatever its window: the connection closed."""
        keys = [key for key in self.pending if pile_no is None or key[0] == pile_no]
        taken = [self._take(key, 0.0) for key in keys if self.pending[key].count]
        for key in keys:
            del self.pending[key]
        return taken

    def _take(self, key: tuple[str, str], now: float) -> RefusedFrames:
        entry = self.pending[key]
        taken = RefusedFrames(key[0], key[1], entry.frame_type, entry.detail, entry.count, entry.at)  # type: ignore[arg-type]
        entry.count, entry.last_written = 0, now
        return taken
