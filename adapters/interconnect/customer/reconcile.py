"""Roaming charges whose start or stop got no trustworthy answer, asked again (we as customer platform).

A follower of the Sessions log keeps ``tcec_roaming`` (``store/roaming.py``): every charge that is not
settled or failed, with when to ask about it next, in the same transaction as its position, so after
any crash the index is exactly the open charges. Each step of ``chargeledger tcec-outbox`` then asks
the peer about the due ones with ``query_equip_charge_status`` (idempotent) and acts on the answer:

* ``requested`` (the answer to our start was lost, or we crashed before asking): if the peer knows the
  StartChargeSeq, ``starting`` (and ``charging`` if it charges); if it answers ``Ret`` 4004 (no such charge),
  the start is sent once more (the driver asked for it), and at the next look, still unknown: failed, the
  hold released;
* ``starting`` (no start result yet): charging or stopping there makes it ``charging``;
* ``stopping`` (a stop decided on a push, or one that may not have arrived): still charging there, the stop
  is sent (again);
* no answer: looked at again later.

Pauses between two looks at one charge double from :data:`FIRST_LOOK` up to :data:`LONGEST`, so a
peer that is down is not hammered; a ``charging`` charge is not asked about (its pushes are the
peer's outbox's job) until the driver stops it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
from eventsourcing.utils import get_topic

from adapters.interconnect.client import TcecError, TcecRefused
from adapters.interconnect.customer.sessions import RoamingSessions
from adapters.interconnect.store.roaming import OpenCharges, Waiting
from adapters.interconnect.tcec.envelope import Ret
from adapters.interconnect.tcec.models.charge import ChargeStatus, ChargeStatusRequest
from adapters.interconnect.tcec.models.codes import StartChargeSeqStat
from adapters.postgres.following import follow
from domain.errors import DomainError, NotFound
from domain.roaming import RoamingCharge

log = logging.getLogger("chargeledger.interconnect.roaming")
TRACKING, FOLLOWER = "tcec_outbox_tracking", "roaming-charges"
EVENTS = ("Requested", "Accepted", "Charging", "StopRequested", "Settled", "Failed")
TOPICS = [f"{get_topic(RoamingCharge)}.{name}" for name in EVENTS]
FIRST_LOOK = timedelta(seconds=60)  # after the start or the stop was asked for
WAIT_FOR_START = timedelta(minutes=5)  # accepted, no start result yet
LONGEST = timedelta(hours=1)
STATE_OF = {"Requested": "requested", "Accepted": "starting", "Charging": "charging", "StopRequested": "stopping"}
# a stop is looked at at once: one we decided on a push (the hold reached) has not been sent yet; one the driver
# asked for was, and the look finds the peer stopping and waits
FIRST_CHECK = {"requested": FIRST_LOOK, "starting": WAIT_FOR_START, "stopping": timedelta(0)}


def _apply(cursor: Any, events: list[Any]) -> None:
    for e in events:
        name = type(e).__name__
        if name in ("Settled", "Failed"):
            OpenCharges.close(cursor, e.originator_id)
            continue
        state = STATE_OF[name]
        known = OpenCharges.state(cursor, e.originator_id)
        if known is None and name != "Requested":
            continue  # closed meanwhile (a late event of a settled charge changes nothing here)
        row = dict(known or {"tenant_id": e.tenant_id, "peer": e.peer, "start_charge_seq": e.start_charge_seq,
                             "connector_id": e.connector_id})
        wait = FIRST_CHECK.get(state)  # None: not looked at (charging)
        never = datetime.max.replace(tzinfo=e.timestamp.tzinfo)
        row.update(charge_id=e.originator_id, state=state, changed_at=e.timestamp,
                   next_check=never if wait is None else e.timestamp + wait)
        OpenCharges.upsert(cursor, row)


class Reconciler:
    def __init__(self, ledger: Any, database_url: str, sessions: RoamingSessions) -> None:
        self.ledger, self.database_url, self.sessions = ledger, database_url, sessions
        self.open: OpenCharges = sessions.store.roaming

    def catch_up(self) -> int:
        with psycopg.connect(self.database_url, connect_timeout=10) as conn:
            return follow(conn, self.ledger.sessions, TRACKING, FOLLOWER, _apply, topics=TOPICS)

    def sweep(self, now: datetime) -> int:
        """Ask about every due charge once. Returns how many were asked about."""
        due = self.open.due(now)
        for waiting in due:
            try:
                self.look(waiting, now)
            except (DomainError, psycopg.Error) as error:  # one charge's trouble never stops the others
                log.exception("T/CEC roaming charge %s: %s", waiting.start_charge_seq, error)
                self.open.checked(waiting.charge_id, now + self.pause(waiting.attempts))
        return len(due)

    @staticmethod
    def pause(attempts: int) -> timedelta:
        return min(LONGEST, FIRST_LOOK * 2 ** min(attempts, 10))

    def look(self, waiting: Waiting, now: datetime) -> None:
        later = now + self.pause(waiting.attempts)
        try:
            peer = self.sessions.store.peers.get(waiting.tenant_id, waiting.peer)
        except NotFound:
            self.open.checked(waiting.charge_id, later)
            return
        charge = self.ledger.roaming_charge(waiting.charge_id)
        try:
            status = self.sessions.client(peer).call("query_equip_charge_status",
                                                     ChargeStatusRequest(StartChargeSeq=waiting.start_charge_seq))
        except TcecRefused as refused:
            if refused.authentic and refused.ret == Ret.BAD_DATA and charge.state == "requested":
                self.unknown_to_peer(peer, charge, waiting, now, later)
            else:
                self.open.checked(waiting.charge_id, later)
            return
        except (TcecError, httpx.HTTPError) as error:
            log.info("T/CEC roaming charge %s: %s asked nothing back (%s)", waiting.start_charge_seq, peer.operator_id,
                     error)
            self.open.checked(waiting.charge_id, later)
            return
        assert isinstance(status, ChargeStatus)
        self.known_to_peer(peer, charge, status, now)
        self.open.checked(waiting.charge_id, later)

    def unknown_to_peer(self, peer: Any, charge: RoamingCharge, waiting: Waiting, now: datetime,
                        later: datetime) -> None:
        """Our start never reached the peer: ask once more (the driver asked for it), then give up."""
        if waiting.attempts == 0:
            charge = self.sessions.ask_start(peer, charge)
            if charge.state == "requested":
                self.open.checked(waiting.charge_id, later)
            return
        self.ledger.roaming_failed(charge.id, at=now, reason=f"{peer.operator_id} never received the start")

    def known_to_peer(self, peer: Any, charge: RoamingCharge, status: ChargeStatus, now: datetime) -> None:
        stat = status.StartChargeSeqStat
        if charge.state == "requested":
            charge = self.ledger.roaming_accepted(charge.id, at=now)
        if charge.state == "starting" and stat in (StartChargeSeqStat.CHARGING, StartChargeSeqStat.STOPPING):
            charge = self.ledger.roaming_charging(charge.id, at=now, start_time=status.StartTime)
        if charge.state == "stopping" and stat == StartChargeSeqStat.CHARGING:
            self.sessions.ask_stop(peer, charge)
