"""A test-only stand-in for ``domain/roaming.py``'s ``RoamingCharge`` (written on another branch; the shared
interface is the roaming spec's "Domain" section): the same aggregate name, event names and attributes, so
the events it stores in the Sessions log are what the ``roaming_orders`` view will read from the real one.

It has no rules (no states refused, no wallet moved): it only writes the events a charge of one of our
drivers on a peer's pile leaves, for the view and the operator API to be tested on. Once the domain lands,
the tests move to its ``Ledger`` facade (``start_roaming`` ... ``settle_roaming``) and this module goes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import derived_id


class RoamingCharge(Aggregate):
    @staticmethod
    def create_id(tenant_id: UUID, peer: str, start_charge_seq: str) -> UUID:
        return derived_id("roaming", tenant_id, peer, start_charge_seq)

    @event("Requested")
    def __init__(self, tenant_id: UUID, peer: str, start_charge_seq: str, connector_id: str, station_id: str,
                 wallet_id: UUID, driver_id: str, hold_fen: int, at: datetime, author: str) -> None:
        self.tenant_id, self.peer, self.start_charge_seq = tenant_id, peer, start_charge_seq

    @event("Accepted")
    def accepted(self, at: datetime) -> None:
        pass

    @event("Charging")
    def charging(self, at: datetime, start_time: datetime) -> None:
        pass

    @event("StopRequested")
    def stop_requested(self, at: datetime, author: str) -> None:
        pass

    @event("Failed")
    def failed(self, at: datetime, reason: str) -> None:
        pass

    @event("Settled")
    def settled(self, at: datetime, energy: int, electricity_fen: int, service_fen: int, start_time: datetime,
                end_time: datetime, stop_reason: int, captured_fen: int, charged_fen: int) -> None:
        pass

    @event("OrderDisputed")
    def order_disputed(self, at: datetime, reason: int, order: dict[str, Any]) -> None:
        pass


def requested(sessions: Any, tenant_id: UUID, peer: str, seq: str, at: datetime, *, driver_id: str = "driver-wang",
              connector_id: str = "9900000000000101", hold_fen: int = 5000) -> RoamingCharge:
    """A charge requested (and saved in ``sessions``, the Sessions Application) for one of our drivers."""
    charge = RoamingCharge(tenant_id=tenant_id, peer=peer, start_charge_seq=seq, connector_id=connector_id,
                           station_id="", wallet_id=derived_id("wallet-test", driver_id), driver_id=driver_id,
                           hold_fen=hold_fen, at=at, author=driver_id)
    sessions.save(charge)
    return charge
