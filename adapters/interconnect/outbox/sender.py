"""Delivering the outbox: each due row sent with the peer's client, its answer read as the standard says.

What stops a push (:func:`judge`):

* ``notification_stationStatus``, ``notification_stationInfo``: ``Status`` 0 (received) or 1 (ignored: the
  note says not to send it again); either ends it;
* the start result, the stop result, a charge status: ``SuccStat`` 0 ends it; 1 (receive failed) is a
  failure like any other, sent again;
* ``notification_charge_order_info``: any ``ConfirmResult`` ends it; anything but 0 (agreed) is the
  peer's dispute of the order, recorded (``tcec_disputes``);
* ``check_charge_orders``: the answer ends it; its ``DisputeOrders`` are recorded.

Anything else (no answer, an HTTP error, a Ret other than 0, an answer whose Sig does not check out, a
peer without outbound secrets yet) is a failed attempt: the row is due again after
:meth:`RetryPolicy.pause` (30 s, doubling, at most 1 h between two attempts), and after
``RetryPolicy.attempts`` (48, about two days) it is given up (``failed``, shown by ``chargeledger
peers outbox``). Everything is in the row, so the pause and the count survive any restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import httpx

from adapters.interconnect.client import TcecClient, TcecError, http_client
from adapters.interconnect.store.directory import Store
from adapters.interconnect.store.outbox import Dispute, Row
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.codec import CodecError
from adapters.interconnect.tcec.interfaces import INTERFACES
from adapters.interconnect.tcec.models.base import DataError, Model
from adapters.interconnect.tcec.models.charge import ResultAck
from adapters.interconnect.tcec.models.codes import ConfirmResult, NotificationStatus, SuccStat
from adapters.interconnect.tcec.models.orders import ChargeOrderAck, ChargeOrderInfo, CheckChargeOrdersResponse
from adapters.interconnect.tcec.models.stations import StationInfoAck
from adapters.interconnect.tcec.models.status import StationStatusAck
from adapters.interconnect.tcec.peer import Peer

log = logging.getLogger("chargeledger.interconnect.outbox")


@dataclass(frozen=True)
class RetryPolicy:
    first: timedelta = timedelta(seconds=30)
    longest: timedelta = timedelta(hours=1)
    attempts: int = 48

    def pause(self, failed: int) -> timedelta | None:
        """The pause after the ``failed``-th failed attempt (1, 2, ...), or None: give up."""
        if failed >= self.attempts:
            return None
        return min(self.first * 2 ** min(failed - 1, 20), self.longest)


@dataclass(frozen=True)
class Outcome:
    state: str | None  # delivered, ignored; None: a failure, to be sent again
    note: str
    disputes: tuple[Dispute, ...] = ()


def judge(interface: str, request: Model, answer: Model) -> Outcome:
    """What the peer's answer to a push means for it (see the module)."""
    if isinstance(answer, (StationStatusAck, StationInfoAck)):
        ignored = answer.Status == NotificationStatus.IGNORED
        return Outcome("ignored" if ignored else "delivered", f"Status {int(answer.Status)}")
    if isinstance(answer, ResultAck):
        if answer.SuccStat == SuccStat.SUCCESS:
            return Outcome("delivered", "SuccStat 0")
        return Outcome(None, f"{interface}: the peer answered SuccStat 1, FailReason {answer.FailReason}")
    if isinstance(answer, ChargeOrderAck):
        assert isinstance(request, ChargeOrderInfo)
        disputes = () if answer.ConfirmResult == ConfirmResult.AGREED else (Dispute(
            request.StartChargeSeq, answer.ConfirmResult, str(request.TotalPower), str(request.TotalMoney)),)
        return Outcome("delivered", f"ConfirmResult {answer.ConfirmResult}", disputes)
    if isinstance(answer, CheckChargeOrdersResponse):
        disputes = tuple(Dispute(d.StartChargeSeq, d.DisputeReason, str(d.TotalPower), str(d.TotalMoney))
                         for d in answer.DisputeOrders)
        return Outcome("delivered", f"TotalDisputeOrder {answer.TotalDisputeOrder}", disputes)
    return Outcome("delivered", type(answer).__name__)


class Sender:
    def __init__(self, store: Store, *, http_for: Callable[[Peer], httpx.Client] | None = None,
                 policy: RetryPolicy = RetryPolicy(), batch: int = 100) -> None:
        self.store, self.policy, self.batch = store, policy, batch
        self._http = None if http_for is not None else http_client()
        self.http_for = http_for or (lambda peer: self._http)

    def sweep(self, now: datetime) -> int:
        """Send every due row (in order within each stream: a row answered lets the next of its stream go,
        so this takes again until nothing is due). Returns the rows answered."""
        answered = 0
        peers: dict[UUID, Peer | None] = {}
        while True:
            rows = self.store.outbox.take(now, self.batch)
            for row in rows:
                if row.peer_id not in peers:
                    peers[row.peer_id] = self._peer(row.peer_id)
                answered += self.send(row, peers[row.peer_id], now)
            if not rows:  # every row taken was leased (or answered): none comes back in this sweep
                return answered

    def _peer(self, peer_id: UUID) -> Peer | None:
        try:
            return self.store.peers.by_id(peer_id)
        except Exception:  # noqa: BLE001 - a peer whose secrets do not open: its rows wait
            log.exception("T/CEC peer %s cannot be read", peer_id)
            return None

    def send(self, row: Row, peer: Peer | None, now: datetime) -> bool:
        interface = INTERFACES[row.interface]
        try:
            request = interface.request.from_wire(wire.loads(row.payload))
            if peer is None or not peer.enabled or peer.outbound is None:
                raise TcecError("the peer is disabled, unreadable, or has not issued us its secrets yet")
            answer = TcecClient(peer, self.store.held, self.http_for(peer)).call(interface, request)
            outcome = judge(row.interface, request, answer)
        except (TcecError, CodecError, DataError, wire.WireError, httpx.HTTPError) as error:
            outcome = Outcome(None, f"{type(error).__name__}: {error}")
        if outcome.state is None:
            pause = self.policy.pause(row.attempts + 1)
            self.store.outbox.failed(row.id, outcome.note, None if pause is None else now + pause)
            log.warning("T/CEC %s %s to %s failed (attempt %d): %s; %s", row.interface, row.key,
                        peer.operator_id if peer else row.peer_id, row.attempts + 1, outcome.note,
                        "given up" if pause is None else f"again in {pause}")
            return False
        if outcome.disputes:
            self.store.outbox.record_disputes(row.peer_id, row.key, outcome.disputes, now)
        self.store.outbox.answered(row.id, outcome.state, outcome.note, now)
        return True

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
