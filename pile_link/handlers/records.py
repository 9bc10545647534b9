"""The transaction record (0x3B): settled in the ledger, then confirmed to the pile (0x40).

"Stored" is said only after the ledger committed; every delivery is confirmed, duplicates too.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from domain.errors import DomainError, WrongPile
from domain.ledger import PileGun
from domain.session import SettlementRecord
from pile_link.boundary import Refusal
from pile_link.handlers.table import routes
from pile_link.link import PileLink
from pile_link.ykc import Frame, TransactionConfirm, TransactionRecord

log = logging.getLogger("chargeledger.pile_link")


def utc_from_pile(local: datetime | None, tz: str) -> datetime | None:
    """A pile's naive wall-clock time (CP56Time2a) as a UTC instant, read in the station's zone."""
    if local is None:
        return None
    return datetime(local.year, local.month, local.day, local.hour, local.minute, local.second,
                    local.microsecond, tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


# Records of one connection settled at once. A pile waits for each record's 0x40 (or resends it), so a real
# one has about one per gun under way; beyond this, a record is left unanswered until one finishes, so that
# a pile sending records under fresh serials while the database is away cannot pile up tasks without end.
MAX_SETTLING = 8


@routes.handles(TransactionRecord)
async def on_transaction(link: PileLink, frame: Frame, msg: TransactionRecord) -> None:
    """Settle by trade serial, then confirm (0x40). Every delivery is confirmed, duplicates too.

    The settlement runs beside the connection's read loop, not on it: while it waits for the database
    (an outage of any length), the pile's heartbeats and readings are still read and answered; the
    record alone waits, unanswered, as a record not yet stored must. A resend of a record whose
    settlement is under way is left to that one (it answers the pile); a record beyond
    ``MAX_SETTLING`` under way on this connection is left unanswered (the pile resends it)."""
    if msg.trade_no in link.settling:
        link.gateway.stats["records_resent_while_settling"] += 1
        return
    if len(link.settling) >= MAX_SETTLING:  # a flood of records (distinct serials) waiting on the database
        link.gateway.stats["records_deferred"] += 1  # unanswered: the pile resends it, as for any record
        return
    record = SettlementRecord(
        tier_energy=tuple(t.energy for t in msg.tiers),  # type: ignore[arg-type]
        pile_tier_amounts=tuple(t.amount for t in msg.tiers),  # type: ignore[arg-type]
        pile_total_amount=msg.amount, pile_total_energy=msg.energy, meter_start=msg.meter_start,
        meter_end=msg.meter_end, started_at=utc_from_pile(msg.start_time, link.timezone),
        ended_at=utc_from_pile(msg.end_time, link.timezone), stop_reason=msg.stop_reason,
    )
    sent_by = link.sent_by(msg.gun_no)
    task = asyncio.create_task(settle(link, frame, msg, record, sent_by), name=f"settle {msg.trade_no}")
    link.settling[msg.trade_no] = task
    task.add_done_callback(lambda _: link.settling.pop(msg.trade_no, None))


async def settle(link: PileLink, frame: Frame, msg: TransactionRecord, record: SettlementRecord,
                 sent_by: PileGun) -> None:
    try:
        await link.gateway.readings.flush()  # every reading before the record, in order
        try:
            await link.call(link.gateway.ledger.settle, msg.trade_no, record, link.now(), pile_no=link.pile_no,
                            gun_no=sent_by.gun_no)
        except WrongPile as error:  # refused at the boundary: answered 0x40 "invalid", counted and reported
            link.refuse(frame, msg, Refusal("foreign_session", str(error)))
            return
        except DomainError as error:
            log.error("pile %s: transaction record %s refused: %s (%s)", link.pile_no, msg.trade_no, error,
                      error.code)
            link.reply(frame, TransactionConfirm(msg.trade_no, 1))
            return
    except asyncio.CancelledError:
        raise
    except Exception:  # as PileLink.dispatch: one bad run must not end the connection; the pile resends
        link.gateway.stats["handler_errors"] += 1
        log.exception("pile %s: settling %s failed", link.pile_no, msg.trade_no)
        return
    link.charging.pop(msg.trade_no, None)
    link.gateway.stop_requested.discard(msg.trade_no)
    link.gateway.stats["records_settled"] += 1
    link.reply(frame, TransactionConfirm(msg.trade_no, 0))
    log.info("pile %s gun %s: record %s settled, %s kWh", link.pile_no, msg.gun_no, msg.trade_no,
             f"{msg.energy / 10000:.4f}")
