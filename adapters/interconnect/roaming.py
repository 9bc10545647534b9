"""Charging for a customer platform's users on our piles: a start is an ordinary ledger session whose
payer is the platform (docs/interconnect.md, "A roaming payer").

* The platform pays on account: its partner account with the tenant (``Ledger.open_partner_account``:
  a wallet with a credit line, so the session's bill is owed on ``receivable:<OperatorID>`` in the
  books, never a driver's wallet). The session holds nothing; the pile is told the roaming balance
  (``pile_link.owed.ROAMING_BALANCE_FEN``). It is priced by our tariff like every session.
* ``StartChargeSeq`` is the idempotency key: its row (``store/starts.py``) commits with the session,
  so a start sent again starts nothing and is answered with the same session's state.
* A ConnectorID that is not one of the tenant's guns is "no such device" (FailReason 1), and nothing is
  written. A start the ledger refuses (the pile offline, the gun busy) writes nothing either.

FailReasons beyond the standard's (3..99 are left to each pair of platforms): see the constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.interconnect import charges
from adapters.interconnect.mapping import parse_connector, seq_stat
from adapters.interconnect.store.directory import Store
from adapters.interconnect.store.starts import Start, author
from adapters.interconnect.tcec.models.charge import ChargeStatus, StartChargeResponse, StopChargeResponse
from adapters.interconnect.tcec.models.codes import StartChargeSeqStat, SuccStat
from adapters.interconnect.tcec.peer import Peer
from adapters.postgres.recorder import AlongsideConflict
from domain.errors import ConcurrencyExhausted, InvalidTariff, InvalidTransition, NotFound, PileUnavailable
from domain.registry import Pile
from domain.session import ChargingSession

# query_start_charge FailReason: 1 and 2 the standard's, then ours
NO_SUCH_DEVICE, DEVICE_OFFLINE, CONNECTOR_UNAVAILABLE, NO_TARIFF, SEQ_ON_ANOTHER_CONNECTOR = 1, 2, 3, 4, 5
# query_stop_charge FailReason: 1..3 the standard's, then ours
STOP_NO_SUCH_DEVICE, STOP_OFFLINE, ALREADY_STOPPED, NO_SUCH_CHARGE = 1, 2, 3, 4
CLOSED = ("finished", "abandoned", "failed")


@dataclass(frozen=True)
class Gun:
    pile: Pile
    gun_no: int


def gun_of(ledger: Any, tenant_id: Any, connector_id: str) -> Gun | None:
    """The tenant's gun a ConnectorID names, or None (not ours, another tenant's, no such gun)."""
    parsed = parse_connector(connector_id)
    if parsed is None:
        return None
    pile_no, gun_no = parsed
    try:
        pile = ledger.registry.get(Pile.create_id(pile_no), Pile, "pile")
    except NotFound:
        return None
    if pile.tenant_id != tenant_id or not pile.has_gun(gun_no):
        return None
    return Gun(pile, gun_no)


class Roaming:
    def __init__(self, ledger: Any, store: Store) -> None:
        if ledger is None:
            raise RuntimeError("serving T/CEC charges needs the ledger (the API's app.state.ledger)")
        self.ledger, self.store = ledger, store

    # ---- start -------------------------------------------------------------------------------------
    def start(self, peer: Peer, seq: str, connector_id: str, now: datetime) -> StartChargeResponse:
        def answer(stat: StartChargeSeqStat, reason: int = 0) -> StartChargeResponse:
            return StartChargeResponse(StartChargeSeq=seq, StartChargeSeqStat=stat, ConnectorID=connector_id,
                                       SuccStat=SuccStat.FAILURE if reason else SuccStat.SUCCESS, FailReason=reason)

        gun = gun_of(self.ledger, peer.tenant_id, connector_id)
        if gun is None:
            return answer(StartChargeSeqStat.UNKNOWN, NO_SUCH_DEVICE)
        for _ in range(3):  # a lost race on the StartChargeSeq, then its winner's row: found by the next look
            done = self.store.starts.find(peer.peer_id, seq)
            if done is not None:
                if done.connector_id != connector_id:
                    return answer(StartChargeSeqStat.UNKNOWN, SEQ_ON_ANOTHER_CONNECTOR)
                return answer(seq_stat(self.session(done).state))
            why_not = gun.pile.not_ready_because(gun.gun_no)
            if why_not:
                return answer(StartChargeSeqStat.UNKNOWN, DEVICE_OFFLINE if "offline" in why_not
                              else CONNECTOR_UNAVAILABLE)
            wallet_id = self.ledger.open_partner_account(peer.tenant_id, peer.operator_id, f"tcec:{peer.operator_id}")
            try:
                self.ledger.request_start(
                    pile_no=gun.pile.pile_no, gun_no=gun.gun_no, wallet_id=wallet_id, hold_fen=0, at=now,
                    author=author(peer.operator_id, seq), origin="tcec", tenant_id=peer.tenant_id, require_ready=True,
                    alongside=self.store.starts.record(peer.peer_id, seq, peer.tenant_id, connector_id, now))
            except AlongsideConflict:
                continue
            except PileUnavailable as error:
                offline = "offline" in str(error.details.get("reason", ""))
                return answer(StartChargeSeqStat.UNKNOWN, DEVICE_OFFLINE if offline else CONNECTOR_UNAVAILABLE)
            except NotFound:
                return answer(StartChargeSeqStat.UNKNOWN, NO_SUCH_DEVICE)
            except InvalidTariff:
                return answer(StartChargeSeqStat.UNKNOWN, NO_TARIFF)
            return answer(StartChargeSeqStat.STARTING)
        raise ConcurrencyExhausted(f"the start {seq} could not be found or made; retry")

    # ---- reading and stopping -----------------------------------------------------------------------
    def session(self, start: Start) -> ChargingSession:
        """The session as the store has it now (the gateway writes it in another process)."""
        return self.ledger.sessions.get(start.session_id, ChargingSession, "session", fresh=True, copy=False)

    def status(self, start: Start) -> ChargeStatus:
        session = self.session(start)
        pile = self.ledger.registry.pile(session.pile_no)
        return charges.snapshot(session, pile, start.start_charge_seq, start.connector_id)

    def stop(self, peer: Peer, seq: str, connector_id: str, now: datetime) -> StopChargeResponse:
        def answer(stat: StartChargeSeqStat, reason: int = 0) -> StopChargeResponse:
            return StopChargeResponse(StartChargeSeq=seq, StartChargeSeqStat=stat,
                                      SuccStat=SuccStat.FAILURE if reason else SuccStat.SUCCESS, FailReason=reason)

        start = self.store.starts.find(peer.peer_id, seq)
        if start is None:
            return answer(StartChargeSeqStat.UNKNOWN, NO_SUCH_CHARGE)
        if start.connector_id != connector_id:
            return answer(StartChargeSeqStat.UNKNOWN, STOP_NO_SUCH_DEVICE)
        session = self.session(start)
        if session.state in CLOSED:
            return answer(seq_stat(session.state), ALREADY_STOPPED)
        if session.state != "stopping":  # a stop sent again is answered as the first was
            try:
                session = self.ledger.request_stop(start.trade_no, f"tcec:{peer.operator_id}",
                                                   "stopped by the customer platform", now, tenant_id=peer.tenant_id)
            except InvalidTransition:  # it closed meanwhile
                return answer(seq_stat(self.session(start).state), ALREADY_STOPPED)
        return answer(seq_stat(session.state))
