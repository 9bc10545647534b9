"""The roaming orders view: one row per charge of one of our drivers on an infrastructure peer's pile.

We are the customer platform here (docs/interconnect.md, "Peers in the operator API"): the charge is
the ``RoamingCharge`` aggregate of the Sessions log (domain/roaming.py), its id a name-based uuid of
(tenant, peer, StartChargeSeq). The row follows its events: requested, starting (the peer accepted
the start), charging, stopping, then settled (the peer's order accepted: what we owe the peer) or
failed. An order the peer sent again with other amounts (``OrderDisputed``) does not change the row's
bill; it is counted in ``disputes``.

``seq`` is the Sessions notification id of the charge's ``Requested`` event, as ``orders.seq`` is of a
session's ``Opened``: both come from the one Sessions log, so the operator API pages a peer's orders of
both directions on one keyset (newest first) that orders arriving meanwhile cannot shift.

What we owe a peer on a day (the payables) is the sum of the settled charges whose ``end_time`` falls
on that China day (Asia/Shanghai), the day the peer's own ``check_charge_orders`` reconciles it under.
"""

from __future__ import annotations

from typing import Any

from projections.base import Item, View, on

COLUMNS = (
    "charge_id", "seq", "tenant_id", "peer", "start_charge_seq", "connector_id", "station_id", "driver_id",
    "wallet_id", "state", "hold_fen", "requested_at", "start_time", "end_time", "energy", "electricity_fen",
    "service_fen", "total_fen", "stop_reason", "settled_at", "failed_at", "reason", "disputes",
)


class RoamingOrders(View):
    name = "roaming_orders"
    tables = ("roaming_orders",)
    ddl = (
        """CREATE TABLE IF NOT EXISTS roaming_orders (
            charge_id uuid PRIMARY KEY, seq bigint NOT NULL UNIQUE, tenant_id uuid NOT NULL, peer text NOT NULL,
            start_charge_seq text NOT NULL, connector_id text NOT NULL, station_id text NOT NULL DEFAULT '',
            driver_id text NOT NULL, wallet_id uuid NOT NULL, state text NOT NULL, hold_fen bigint NOT NULL,
            requested_at timestamptz NOT NULL, start_time timestamptz, end_time timestamptz,
            energy bigint, electricity_fen bigint, service_fen bigint, total_fen bigint, stop_reason int,
            settled_at timestamptz, failed_at timestamptz, reason text NOT NULL DEFAULT '',
            disputes int NOT NULL DEFAULT 0)""",
        "CREATE INDEX IF NOT EXISTS roaming_orders_peer_seq ON roaming_orders (tenant_id, peer, seq DESC)",
        ("CREATE INDEX IF NOT EXISTS roaming_orders_peer_end ON roaming_orders (tenant_id, peer, end_time) "
         "WHERE state = 'settled'"),
    )

    @on("Sessions", "RoamingCharge.Requested")
    def requested(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute(
            "INSERT INTO roaming_orders (charge_id, seq, tenant_id, peer, start_charge_seq, connector_id, station_id, "
            "driver_id, wallet_id, state, hold_fen, requested_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "'requested', %s, %s)",
            (e.originator_id, item.notification_id, e.tenant_id, e.peer, e.start_charge_seq, e.connector_id,
             e.station_id or "", e.driver_id, e.wallet_id, e.hold_fen, e.at))

    def _update(self, cur: Any, item: Item, sets: str, **params: Any) -> None:
        cur.execute(f"UPDATE roaming_orders SET {sets} WHERE charge_id = %(id)s",  # noqa: S608 - fixed column lists
                    {**params, "id": item.event.originator_id})

    @on("Sessions", "RoamingCharge.Accepted")
    def accepted(self, cur: Any, item: Item) -> None:
        self._update(cur, item, "state = 'starting'")

    @on("Sessions", "RoamingCharge.Charging")
    def charging(self, cur: Any, item: Item) -> None:
        self._update(cur, item, "state = 'charging', start_time = %(start)s", start=item.event.start_time)

    @on("Sessions", "RoamingCharge.StopRequested")
    def stop_requested(self, cur: Any, item: Item) -> None:
        self._update(cur, item, "state = 'stopping'")

    @on("Sessions", "RoamingCharge.Failed")
    def failed(self, cur: Any, item: Item) -> None:
        e = item.event
        self._update(cur, item, "state = 'failed', failed_at = %(at)s, reason = %(reason)s", at=e.at, reason=e.reason)

    @on("Sessions", "RoamingCharge.Settled")
    def settled(self, cur: Any, item: Item) -> None:
        e = item.event
        self._update(cur, item,
                     "state = 'settled', settled_at = %(at)s, start_time = %(start)s, end_time = %(end)s, "
                     "energy = %(energy)s, electricity_fen = %(electricity)s, service_fen = %(service)s, "
                     "total_fen = %(total)s, stop_reason = %(stop)s",
                     at=e.at, start=e.start_time, end=e.end_time, energy=e.energy, electricity=e.electricity_fen,
                     service=e.service_fen, total=e.electricity_fen + e.service_fen, stop=e.stop_reason)

    @on("Sessions", "RoamingCharge.OrderDisputed")
    def disputed(self, cur: Any, item: Item) -> None:
        self._update(cur, item, "disputes = disputes + 1")
