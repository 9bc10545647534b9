"""The fast path's small records of each wallet, session and roaming charge, changed by the
aggregates' own code.

A mirror holds only what the checks read. Each stored event's decoded JSON is applied to it by the
same function the aggregate's ``@event`` body calls (:mod:`domain.changes`), looked up here by the
event's name; so the mirror and the real aggregate cannot drift apart, and a new event is written
once. What differs is only what is skipped: no event objects, no datetimes or UUIDs decoded, none
of the live aggregate's own bookkeeping (idempotency outcomes, deadlines).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain import changes
from domain.audit.stored import as_uuid, plain

WALLET_CHANGES = {f"Wallet.{name}": change for name, change in changes.WALLET.items()}
SESSION_CHANGES = {f"ChargingSession.{name}": change for name, change in changes.SESSION.items()}
ROAMING_CHANGES = {f"RoamingCharge.{name}": change for name, change in changes.ROAMING.items()}
METER_READ = "ChargingSession.MeterRead"
METER_READ_TOPIC = f"domain.session:{METER_READ}"
meter_read = changes.meter_read


class WalletMirror:
    __slots__ = ("id", "tenant_id", "driver_id", "balances", "holds", "refunds", "owed_to", "version")

    def __init__(self, wallet_id: UUID, a: dict[str, Any]) -> None:
        """A wallet as its ``Wallet.Opened`` event (decoded JSON ``a``) opens it."""
        self.id = wallet_id
        self.tenant_id = as_uuid(a["tenant_id"])
        self.driver_id = a["driver_id"]
        self.version = 1
        changes.wallet_opened(self, a)


class SessionMirror:
    __slots__ = ("id", "trade_no", "tenant_id", "wallet_id", "hold_fen", "tariff", "timezone", "slots", "state",
                 "readings", "meter_energy", "tier_energy", "anomalies", "bill", "pile_difference")

    def __init__(self, session_id: UUID, a: dict[str, Any]) -> None:
        """A session as its ``ChargingSession.Opened`` event (decoded JSON ``a``) opens it."""
        self.id = session_id
        self.tenant_id = as_uuid(a["tenant_id"])
        self.wallet_id = as_uuid(a["wallet_id"])
        self.slots = tuple(a["tariff"]["schedule"]["slots"])  # the tier of each local half hour
        changes.session_opened(self, a)


class RoamingMirror:
    __slots__ = ("id", "tenant_id", "wallet_id", "peer", "start_charge_seq", "connector_id", "station_id",
                 "driver_id", "hold_fen", "state", "bill", "disputes")

    def __init__(self, charge_id: UUID, a: dict[str, Any]) -> None:
        """A roaming charge as its ``RoamingCharge.Requested`` event (decoded JSON ``a``) opens it."""
        self.id = charge_id
        self.tenant_id = as_uuid(a["tenant_id"])
        self.wallet_id = as_uuid(a["wallet_id"])
        changes.roaming_requested(self, a)


def wallet_view(w: Any) -> dict[str, Any]:
    """What must agree between a replayed wallet and the live one (real aggregate or mirror)."""
    return {"balances": {k: v for k, v in w.balances.items() if v},
            "holds": dict(w.holds),
            "refunds": {k: {"amount": r["amount"], "provider": r["provider"], "state": r["state"]}
                        for k, r in w.refunds.items()}}


def session_view(s: Any) -> dict[str, Any]:
    """What must agree between a replayed session on either path (real aggregate or mirror)."""
    return {"trade_no": s.trade_no, "state": s.state, "readings": s.readings, "meter_energy": s.meter_energy,
            "tier_energy": list(s.tier_energy), "anomalies": s.anomalies, "bill": plain(s.bill),
            "pile_difference": s.pile_difference, "hold_fen": s.hold_fen,
            "wallet_id": s.wallet_id.hex if s.wallet_id else None}


def roaming_view(r: Any) -> dict[str, Any]:
    """What must agree between a replayed roaming charge on either path (real aggregate or mirror)."""
    return {"peer": r.peer, "start_charge_seq": r.start_charge_seq, "state": r.state, "hold_fen": r.hold_fen,
            "bill": plain(r.bill), "disputes": plain(r.disputes), "wallet_id": r.wallet_id.hex}
