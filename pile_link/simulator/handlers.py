"""What a simulated pile does with each frame the platform sends: one handler per message class.

The handlers are registered on ``routes``, a :class:`pile_link.ykc.routing.Routes` table for the
pile side (downlink, even frame types); the gateway's link keeps the platform side's table
(:data:`pile_link.handlers.routes`). :class:`~pile_link.simulator.connection.PileConnection` hands each
decoded frame to its handler, synchronously and in stream order. Answers to the pile's own requests
(0x02, 0x06, 0x32) are taken by whoever waits for them (``PileConnection.expect``) instead.

A handler gets the pile as a :class:`Pile`: the few members of
:class:`~pile_link.simulator.pile.SimPile` it may use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from pile_link.simulator.clock import SimClock
from pile_link.simulator.events import Event
from pile_link.simulator.gun import NO_CARD, STOP_REMOTE, Gun, PendingStart
from pile_link.simulator.spec import (
    START_NOT_PLUGGED,
    START_OK,
    START_PILE_MISMATCH,
    STOP_NOT_CHARGING,
    STOP_OK,
    STOP_PILE_MISMATCH,
    PendingRecord,
    PileConfig,
)
from pile_link.ykc import (
    BillingModelReply,
    BillingModelSet,
    BillingModelSetAck,
    Frame,
    HeartbeatAck,
    Message,
    ReadRealtime,
    RemoteStart,
    RemoteStartReply,
    RemoteStop,
    RemoteStopReply,
    TimeSync,
    TimeSyncAck,
    TransactionConfirm,
)
from pile_link.ykc.routing import Routes
from pile_link.ykc.transactions import TRADE_APP


class Pile(Protocol):
    """What a handler may use of the pile it runs on."""

    pile_no: str
    guns: list[Gun]
    records: dict[str, PendingRecord]  # unconfirmed 0x3B by trade number
    clock: SimClock
    config: PileConfig
    clock_offset: timedelta  # set by 0x56
    last_ack: float  # loop time of the last 0x04

    def gun(self, no: int | str) -> Gun: ...

    def write(self, msg: Message, seq: bytes | None = None) -> bool: ...

    def emit(self, gun: Gun | None, kind: str, **data: Any) -> Event: ...

    def can_start(self, gun: Gun) -> int: ...

    def start_session(self, gun: Gun, trade_no: str, trade_type: int, balance_fen: int | None, *,
                      physical_card: bytes = NO_CARD, logical_card_no: str = "0" * 16) -> None: ...

    def finish(self, gun: Gun, reason: int) -> None: ...

    def take_model(self, msg: BillingModelReply | BillingModelSet, via: str) -> None: ...

    def send_realtime(self, gun: Gun, seq: bytes | None = None) -> None: ...


Handler = Callable[[Pile, Frame, Any], None]
routes: Routes[Handler] = Routes("pile")  # what the platform sends, and what the pile does with it


def named_gun(pile: Pile, gun_no: str) -> Gun | None:
    """The gun a platform frame names, or None if the pile has no such gun."""
    return pile.guns[int(gun_no) - 1] if gun_no.isdigit() and 1 <= int(gun_no) <= len(pile.guns) else None


@routes.handles(HeartbeatAck)
def on_heartbeat_ack(pile: Pile, frame: Frame, msg: HeartbeatAck) -> None:
    pile.last_ack = asyncio.get_running_loop().time()


@routes.handles(RemoteStart)
def on_remote_start(pile: Pile, frame: Frame, msg: RemoteStart) -> None:
    gun = named_gun(pile, msg.gun_no)
    pile.emit(gun, "remote_start", trade_no=msg.trade_no, balance_fen=msg.balance_fen, gun_no=msg.gun_no)
    if msg.pile_no != pile.pile_no or gun is None:
        reason = START_PILE_MISMATCH
    else:
        reason = pile.can_start(gun)
    ok = reason == START_OK
    pile.write(RemoteStartReply(msg.trade_no, pile.pile_no, msg.gun_no, 1 if ok else 0, reason), frame.seq)
    pile.emit(gun, "start_replied", trade_no=msg.trade_no, result=1 if ok else 0, fail_reason=reason)
    if gun is None:
        return
    if reason == START_NOT_PLUGGED:
        gun.pending_start = PendingStart(msg, pile.clock.elapsed() + pile.config.plug_start_window)
    elif ok:
        pile.start_session(gun, msg.trade_no, TRADE_APP, msg.balance_fen, logical_card_no=msg.logical_card_no,
                           physical_card=msg.physical_card)


@routes.handles(RemoteStop)
def on_remote_stop(pile: Pile, frame: Frame, msg: RemoteStop) -> None:
    gun = named_gun(pile, msg.gun_no)
    pile.emit(gun, "remote_stop", gun_no=msg.gun_no)
    if msg.pile_no != pile.pile_no or gun is None:
        result, reason = 0, STOP_PILE_MISMATCH
    elif not gun.charging:
        result, reason = 0, STOP_NOT_CHARGING
    else:
        result, reason = 1, STOP_OK
    pile.write(RemoteStopReply(pile.pile_no, msg.gun_no, result, reason), frame.seq)
    pile.emit(gun, "stop_replied", result=result, fail_reason=reason)
    if gun is not None and result == 1:
        pile.finish(gun, STOP_REMOTE)


@routes.handles(ReadRealtime)
def on_read_realtime(pile: Pile, frame: Frame, msg: ReadRealtime) -> None:
    gun = named_gun(pile, msg.gun_no)
    if gun is not None:
        pile.send_realtime(gun, frame.seq)


@routes.handles(TimeSync)
def on_time_sync(pile: Pile, frame: Frame, msg: TimeSync) -> None:
    if msg.time is not None:
        pile.clock_offset = datetime(*msg.time.timetuple()[:6]) - pile.clock.now().replace(microsecond=0)
    pile.write(TimeSyncAck(pile.pile_no, msg.time), frame.seq)
    pile.emit(None, "time_synced", time=msg.time)


@routes.handles(BillingModelReply)
def on_model_reply(pile: Pile, frame: Frame, msg: BillingModelReply) -> None:
    pile.take_model(msg, "0x0A")


@routes.handles(BillingModelSet)
def on_model_set(pile: Pile, frame: Frame, msg: BillingModelSet) -> None:
    # Sessions keep the model they started with; the new one applies to the next start.
    pile.take_model(msg, "0x58")
    pile.write(BillingModelSetAck(pile.pile_no, 1), frame.seq)


@routes.handles(TransactionConfirm)
def on_confirm(pile: Pile, frame: Frame, msg: TransactionConfirm) -> None:
    pending = pile.records.pop(msg.trade_no, None)
    if pending is None:
        return  # a second 0x40 for a record already confirmed
    gun = pile.gun(pending.record.gun_no)
    kind = "record_confirmed" if msg.result == 0 else "record_rejected"
    pile.emit(gun, kind, trade_no=msg.trade_no, attempts=pending.attempts, result=msg.result)
