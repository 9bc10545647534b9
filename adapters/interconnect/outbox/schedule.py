"""The pushes made by the clock: a charging session's status at its peer's interval, and the daily check.

* ``notification_equip_charge_status``: for each session charging for a peer whose
  ``status_interval`` is not 0, the n-th snapshot is due ``n × interval`` after it began charging,
  keyed ``charge:<StartChargeSeq>:<n>``: one per interval whichever process (or how many) ticks, none
  for the intervals a stopped process missed (a snapshot is of now, not of then). An older snapshot
  still unsent is dropped when a newer one is enqueued, and every one when the session closes.
* ``check_charge_orders``: once a China day is over (and :data:`CHECK_AT` has passed, so late records
  settle first), the peer's orders that ended that day, keyed ``check:<yyyy-MM-dd>``; days missed while
  no process ran are sent too, up to :data:`CHECK_DAYS` back, none before the peer was configured. For a
  regulator peer the orders are every order pushed to it (``regulated.py``), whoever started the session.
* ``notification_stationInfo`` to each regulator peer: from :data:`CHECK_AT` on each China day, every
  station of its tenant again, keyed ``info:<yyyy-MM-dd>:<StationID>`` (``stations.daily``), all in one
  transaction: once a day. Only the day it is (a day missed is not made up: the entry is of now).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from adapters.interconnect.amounts import kwh, yuan
from adapters.interconnect.outbox import regulated, stations
from adapters.interconnect.roaming import Roaming
from adapters.interconnect.store.directory import Store
from adapters.interconnect.store.outbox import Linked, Outbox, Push
from adapters.interconnect.tcec.envelope import SHANGHAI
from adapters.interconnect.tcec.models.orders import CheckChargeOrders, CheckedOrder
from domain.errors import DomainError

CHECK_AT = time(1, 0)  # China time: the day before is checked from then on
CHECK_DAYS = 7


def check_seq(our_operator_id: str, day: date) -> str:
    """27 characters: our OperatorID, the day, ten zeros (one check a day per peer)."""
    return f"{our_operator_id}{day:%Y%m%d}{0:010d}"


class Schedule:
    def __init__(self, ledger: Any, store: Store, *, check_at: time = CHECK_AT) -> None:
        self.ledger, self.store, self.check_at = ledger, store, check_at

    def run(self, now: datetime) -> int:
        return self.charge_statuses(now) + self.daily_checks(now) + self.station_infos(now)

    def _exists(self, peer_id: UUID, key: str) -> bool:
        with self.store.pool.connection() as conn:
            return conn.execute("SELECT 1 FROM tcec_outbox WHERE peer_id = %s AND key = %s",
                                (peer_id, key)).fetchone() is not None

    def charge_statuses(self, now: datetime) -> int:
        made = 0
        roaming = Roaming(self.ledger, self.store)
        intervals: dict[UUID, int] = {}
        for start in self.store.starts.charging():
            if start.peer_id not in intervals:
                intervals[start.peer_id] = self.store.peers.by_id(start.peer_id).status_interval
            interval = intervals[start.peer_id]
            if not interval or start.charging_at is None:
                continue
            n = int((now - start.charging_at).total_seconds() // interval)
            key = f"charge:{start.start_charge_seq}:{n}"
            if n < 1 or self._exists(start.peer_id, key):
                continue
            try:
                snapshot = roaming.status(start)
            except DomainError:
                continue
            with self.store.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
                Outbox.supersede(cursor, start.peer_id, f"charge:{start.start_charge_seq}:")
                made += Outbox.add(cursor, start.peer_id, Push("notification_equip_charge_status", key, snapshot), now)
        return made

    def daily_checks(self, now: datetime) -> int:
        local = now.astimezone(SHANGHAI)
        last = local.date() - timedelta(days=1 if local.time() >= self.check_at else 2)
        with self.store.pool.connection() as conn:
            peers = conn.execute("SELECT peer_id, created_at, role FROM tcec_peers WHERE role IN ('customer', "
                                 "'regulator') AND enabled AND outbound_sealed IS NOT NULL").fetchall()
        made = 0
        for peer_id, created_at, role in peers:
            first = max(created_at.astimezone(SHANGHAI).date(), last - timedelta(days=CHECK_DAYS - 1))
            day = first
            while day <= last:
                key = f"check:{day.isoformat()}"
                if not self._exists(peer_id, key):
                    made += self.store.outbox.enqueue(peer_id, Push("check_charge_orders", key,
                                                                    self.check(peer_id, day, role)), now)
                day += timedelta(days=1)
        return made

    def check(self, peer_id: UUID, day: date, role: str = "customer") -> CheckChargeOrders:
        """The peer's orders that ended on ``day`` (China time), with their totals: a customer's, the sessions
        it started; a regulator's, every order pushed to it."""
        since = datetime.combine(day, time(), SHANGHAI)
        if role == "regulator":
            orders = regulated.ended_between(self.store.pool, peer_id, since, since + timedelta(days=1))
        else:
            orders = [(o.start_charge_seq, o.energy, o.total_fen) for o in
                      self.store.starts.ended_between(peer_id, since, since + timedelta(days=1))]
        checked = [CheckedOrder(StartChargeSeq=seq, TotalPower=kwh(energy or 0), TotalMoney=yuan(total_fen or 0))
                   for seq, energy, total_fen in orders]
        peer = self.store.peers.by_id(peer_id)
        return CheckChargeOrders(
            CheckOrderSeq=check_seq(peer.our_operator_id, day), StartTime=since,
            EndTime=since + timedelta(days=1, seconds=-1), OrderCount=len(checked),
            TotalOrderPower=sum((c.TotalPower for c in checked), Decimal(0)),
            TotalOrderMoney=sum((c.TotalMoney for c in checked), Decimal(0)), ChargeOrders=checked)

    def station_infos(self, now: datetime) -> int:
        """Every station's entry to each regulator peer, once a China day from :data:`CHECK_AT` on."""
        local = now.astimezone(SHANGHAI)
        if local.time() < self.check_at:
            return 0
        day, made = local.date(), 0
        prefix = f"info:{day.isoformat()}:"
        with self.store.pool.connection() as conn:
            peers = conn.execute(
                "SELECT peer_id, tenant_id, created_at, our_operator_id FROM tcec_peers p WHERE role = 'regulator' "
                "AND enabled AND outbound_sealed IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tcec_outbox o WHERE "
                "o.peer_id = p.peer_id AND o.key >= %s AND o.key < %s)", (prefix, prefix[:-1] + ";")).fetchall()
        for row in peers:
            with self.store.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
                made += stations.daily(cursor, Linked(*row), day, now)
        return made
