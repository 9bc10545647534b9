"""Our driver on an infrastructure peer's connector: start, watch, stop (we as customer platform).

A roaming charge is a ledger aggregate (``domain/roaming.py``): its ``Requested`` event and the hold
on the driver's wallet commit together (``Ledger.start_roaming``), **then** we ask the peer
(``query_start_charge``), so a crash at any point leaves either nothing or a charge the reconciler
finishes (``reconcile.py``), never a hold nobody knows about.

**StartChargeSeq** is our OperatorID as the peer knows us and 18 digits. With the driver's
``Idempotency-Key`` the digits are derived from (tenant, driver, key): a retried start is the same
StartChargeSeq, the ledger gives back the charge it has, and the peer, for which StartChargeSeq is
the idempotency key, answers the same start again instead of starting a second one.

What the peer's answer to the start means:

* ``SuccStat`` 0: accepted (``starting``); the pile's answer comes as ``notification_start_charge_result``.
* ``SuccStat`` 1: refused with its ``FailReason``: the charge fails and its hold is released.
* ``Ret`` 4001..4004: the envelope was refused before anything ran there: failed, released.
* no trustworthy answer (no connection, a timeout, ``Ret`` -1 or 500, a bad ``Sig``): unknown. The
  charge stays ``requested`` with its hold, and the reconciler asks the peer what became of it.

A stop is recorded first (``StopRequested``) and then sent, so a stop the peer did not hear is sent
again by the reconciler (the peer answers a repeated ``query_stop_charge`` as it did the first).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import httpx

from adapters.interconnect.amounts import kwh
from adapters.interconnect.client import TcecClient, TcecError, TcecRefused, http_client
from adapters.interconnect.store.directory import Store
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.envelope import Ret
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.models.charge import (ChargeStatus, ChargeStatusRequest, StartChargeRequest,
                                                      StopChargeRequest)
from adapters.interconnect.tcec.models.codes import StartChargeSeqStat, SuccStat
from adapters.interconnect.tcec.peer import Peer
from domain.clock import utcnow
from domain.errors import DomainError, IdempotencyConflict, NotFound
from domain.money import fen_to_yuan_str
from domain.roaming import RoamingCharge

log = logging.getLogger("chargeledger.interconnect.roaming")
LIVE_TIMEOUT = 5.0  # seconds a driver's watch waits for the peer's live status before showing the last push
REFUSED_UNHEARD = (Ret.BAD_SIG, Ret.BAD_TOKEN, Ret.BAD_ENVELOPE, Ret.BAD_DATA)  # refused before anything ran there
FINAL = ("settled", "failed")
PUSHED_STATUS = "notification_equip_charge_status"


class RoamingUnavailable(DomainError):
    """The peer is not one our drivers can roam onto (not an infrastructure peer, disabled, or it has
    not issued us its secrets yet)."""

    code = "roaming_unavailable"


class StartRefused(DomainError):
    """The peer refused the start; the hold is released."""

    code = "start_refused"


def start_charge_seq(our_operator_id: str, tenant_id: UUID, driver_id: str, key: str | None) -> str:
    """27 characters: our OperatorID and 18 digits (derived from the driver's Idempotency-Key when given)."""
    if key is None:
        digits = secrets.randbelow(10 ** 18)
    else:
        digest = hashlib.sha256(f"{tenant_id}/{driver_id}/{key}".encode()).digest()
        digits = int.from_bytes(digest[:16], "big") % 10 ** 18
    return f"{our_operator_id}{digits:018d}"


class RoamingSessions:
    """The driver API's roaming calls, without HTTP, on one database: ``ledger`` and ``store`` are the same
    shard's. ``http_for`` gives the HTTP client for a peer (the tests give the peer's app); ``ledger_of``,
    instead of ``ledger``, makes the shard's Ledger the first time it is needed (the API makes a shard's
    Ledger on first use, docs/shards.md)."""

    def __init__(self, ledger: Any, store: Store, *, http_for: Callable[[Peer], httpx.Client] | None = None,
                 clock: Callable[[], datetime] = utcnow, ledger_of: Callable[[], Any] | None = None) -> None:
        if ledger is None and ledger_of is None:
            raise RuntimeError("roaming needs the ledger (the API's app.state.ledger)")
        self._ledger, self._ledger_of = ledger, ledger_of
        self.store, self.clock = store, clock
        self._http = None if http_for is not None else http_client(LIVE_TIMEOUT * 6)
        self.http_for = http_for or (lambda peer: self._http)

    @property
    def ledger(self) -> Any:
        if self._ledger is None:
            assert self._ledger_of is not None
            self._ledger = self._ledger_of()
        return self._ledger

    # ---- the peer ----------------------------------------------------------------------------------------
    def peer(self, tenant_id: UUID, operator_id: str) -> Peer:
        """The tenant's infrastructure peer with this OperatorID, ready to be called; 404 otherwise
        (another tenant's peer is not found, exactly as one that does not exist)."""
        peer = self.store.peers.get(tenant_id, operator_id)
        if peer.role != Role.INFRASTRUCTURE:
            raise NotFound(f"no operator {operator_id} our drivers can charge with", operator_id=operator_id)
        if not peer.enabled or peer.outbound is None:
            raise RoamingUnavailable(f"charging with {operator_id} is not available now", operator_id=operator_id)
        return peer

    def client(self, peer: Peer) -> TcecClient:
        return TcecClient(peer, self.store.held, self.http_for(peer))

    # ---- start -------------------------------------------------------------------------------------------
    def start(self, tenant_id: UUID, driver_id: str, operator_id: str, connector_id: str, *,
              hold_for: Callable[[], tuple[UUID, int]], station_id: str = "",
              key: str | None = None) -> tuple[RoamingCharge, bool]:
        """Hold the driver's money, record the charge, ask the peer. ``hold_for`` is the driver API's own
        rule of what a start holds ((wallet id, fen): the tenant's start rules). Returns (the charge,
        whether this call asked the peer): a StartChargeSeq the peer has answered is not asked again."""
        peer = self.peer(tenant_id, operator_id)
        seq = start_charge_seq(peer.our_operator_id, tenant_id, driver_id, key)
        known = self.ledger.find_roaming(tenant_id, peer.operator_id, seq)
        if known is not None and known.connector_id != connector_id:
            raise IdempotencyConflict("this Idempotency-Key started a charge on another connector",
                                      start_charge_seq=seq)
        if known is not None and known.state != "requested":
            return known, False
        if known is None:
            wallet_id, hold = hold_for()
            known = self.ledger.start_roaming(
                tenant_id=tenant_id, wallet_id=wallet_id, peer=peer.operator_id, connector_id=connector_id,
                station_id=station_id, start_charge_seq=seq, hold_fen=hold, at=self.clock(), author=driver_id)
        return self.ask_start(peer, known), True

    def ask_start(self, peer: Peer, charge: RoamingCharge) -> RoamingCharge:
        """``query_start_charge`` for a charge still ``requested`` (a first start, a retry, the reconciler)."""
        request = StartChargeRequest(StartChargeSeq=charge.start_charge_seq, ConnectorID=charge.connector_id)
        try:
            answer = self._call_unheard_twice(peer, "query_start_charge", request)
        except TcecRefused as refused:
            if refused.authentic and refused.ret in REFUSED_UNHEARD:
                why = f"refused by {peer.operator_id}: Ret {refused.ret} {refused.msg}"
                return self.ledger.roaming_failed(charge.id, at=self.clock(), reason=why)
            log.warning("T/CEC start %s on %s: %s; to be asked again", charge.start_charge_seq, peer.operator_id,
                        refused)
            return charge
        except (TcecError, httpx.HTTPError) as error:
            log.warning("T/CEC start %s on %s: no answer (%s); to be asked again", charge.start_charge_seq,
                        peer.operator_id, error)
            return charge
        if answer.SuccStat == SuccStat.SUCCESS:
            return self.ledger.roaming_accepted(charge.id, at=self.clock())
        return self.ledger.roaming_failed(charge.id, at=self.clock(),
                                          reason=f"refused by {peer.operator_id}: FailReason {answer.FailReason}")

    def _call_unheard_twice(self, peer: Peer, interface: str, request: Any) -> Any:
        """A call that changes a charge, sent again once if the peer refused our token: that refusal comes
        before anything runs there (the client dropped the token; the retry gets a new one), and the
        StartChargeSeq makes the call idempotent at the peer anyway."""
        try:
            return self.client(peer).call(interface, request)
        except TcecRefused as refused:
            if not (refused.authentic and refused.ret == Ret.BAD_TOKEN):
                raise
        return self.client(peer).call(interface, request)

    # ---- watch and stop ----------------------------------------------------------------------------------
    def charge(self, tenant_id: UUID, driver_id: str, operator_id: str, seq: str) -> RoamingCharge:
        """The driver's own charge; anybody else's is 404, exactly as one that does not exist."""
        charge = self.ledger.find_roaming(tenant_id, operator_id, seq)
        if charge is None or charge.driver_id != driver_id:
            raise NotFound(f"no charge {seq}", start_charge_seq=seq)
        return charge

    def watch(self, tenant_id: UUID, driver_id: str, operator_id: str, seq: str) -> dict[str, Any]:
        """The charge, and while it is open the peer's live status (asked now; else the last it pushed)."""
        charge = self.charge(tenant_id, driver_id, operator_id, seq)
        live = None
        if charge.state in ("starting", "charging", "stopping"):
            live = self.live(self.store.peers.get(tenant_id, operator_id), charge)
        return view(charge, live)

    def live(self, peer: Peer, charge: RoamingCharge) -> ChargeStatus | None:
        try:
            answer = self.client(peer).call("query_equip_charge_status",
                                            ChargeStatusRequest(StartChargeSeq=charge.start_charge_seq))
            assert isinstance(answer, ChargeStatus)
            return answer
        except (TcecError, httpx.HTTPError) as error:
            log.info("T/CEC live status of %s from %s: %s; showing the last push", charge.start_charge_seq,
                     peer.operator_id, error)
        pushed = self.store.received.latest(peer.peer_id, PUSHED_STATUS, f"{charge.start_charge_seq}:")
        return None if pushed is None else ChargeStatus.from_wire(wire.loads(pushed))

    def stop(self, tenant_id: UUID, driver_id: str, operator_id: str, seq: str) -> dict[str, Any]:
        charge = self.charge(tenant_id, driver_id, operator_id, seq)
        if charge.state != "stopping":
            charge = self.ledger.roaming_stop_requested(charge.id, at=self.clock(), author=driver_id)
        return view(self.ask_stop(self.store.peers.get(tenant_id, operator_id), charge), None)

    def ask_stop(self, peer: Peer, charge: RoamingCharge) -> RoamingCharge:
        """``query_stop_charge`` for a charge we decided to stop; a failure leaves it to the reconciler."""
        try:
            answer = self._call_unheard_twice(peer, "query_stop_charge", StopChargeRequest(
                StartChargeSeq=charge.start_charge_seq, ConnectorID=charge.connector_id))
        except (TcecError, httpx.HTTPError) as error:
            log.warning("T/CEC stop %s on %s: %s; to be sent again", charge.start_charge_seq, peer.operator_id, error)
            return charge
        if answer.SuccStat != SuccStat.SUCCESS and answer.StartChargeSeqStat != StartChargeSeqStat.FINISHED:
            log.warning("T/CEC stop %s on %s refused: FailReason %s", charge.start_charge_seq, peer.operator_id,
                        answer.FailReason)
        return charge

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


def view(charge: RoamingCharge, live: ChargeStatus | None) -> dict[str, Any]:
    """What the driver sees of a roaming charge: amounts in yuan strings, energy in kWh strings."""
    bill = charge.bill
    return {
        "operator_id": charge.peer, "start_charge_seq": charge.start_charge_seq, "connector_id": charge.connector_id,
        "station_id": charge.station_id, "state": charge.state, "final": charge.state in FINAL,
        "hold_fen": charge.hold_fen, "hold_yuan": fen_to_yuan_str(charge.hold_fen),
        "requested_at": charge.requested_at.isoformat(),
        "start_time": charge.start_time.isoformat() if charge.start_time else None,
        "live": None if live is None else {
            "energy_kwh": str(live.TotalPower), "amount_yuan": str(live.TotalMoney), "soc": _plain(live.Soc),
            "connector_status": int(live.ConnectorStatus), "since": live.StartTime.isoformat(),
            "at": live.EndTime.isoformat()},
        "bill": None if bill is None else {
            "energy_kwh": str(kwh(bill["energy"])), "electricity_yuan": fen_to_yuan_str(bill["electricity_fen"]),
            "service_yuan": fen_to_yuan_str(bill["service_fen"]), "total_fen": bill["total_fen"],
            "total_yuan": fen_to_yuan_str(bill["total_fen"]), "stop_reason": bill["stop_reason"]},
    }


def _plain(value: Any) -> str | None:
    return None if value is None else str(value)
