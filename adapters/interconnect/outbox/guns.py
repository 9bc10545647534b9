"""``notification_stationStatus`` on every change of a gun's T/CEC status, from the Registry's events.

The follower folds each pile's events into ``tcec_piles`` (enabled, online, and per gun its status,
plug, faults and T/CEC code) in the transaction that moves its position, so a change is seen exactly
once, whatever the views are doing. When a gun's code changes (:func:`mapping.connector_status`:
offline, idle, occupied, charging, fault), one push per customer peer of the pile's tenant is
enqueued, and one per regulator peer (a regulator hears every status of the tenant's guns), keyed by the
connector and the pile's event version. A peer is told the changes after it was configured, not the
ledger's history.
"""

from __future__ import annotations

import copy
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic
from psycopg.types.json import Jsonb

from adapters.interconnect.mapping import connector_code, connector_status
from adapters.interconnect.store.outbox import Outbox, Push
from adapters.interconnect.tcec.models.status import ConnectorStatusInfo, StationStatusNotification
from domain.registry import Pile

EVENTS = ("Registered", "Connected", "Disconnected", "GunStatusChanged", "FaultRaised", "FaultCleared", "Enabled",
          "Disabled")
TOPICS = [f"{get_topic(Pile)}.{name}" for name in EVENTS]
INTERFACE = "notification_stationStatus"
HEARERS = ("customer", "regulator")  # the roles told every status change


def code(pile: dict[str, Any], gun: dict[str, Any]) -> int:
    return int(connector_status(enabled=pile["enabled"], online=pile["online"], status=gun["status"],
                                plugged=gun["plugged"], faults=gun["faults"]))


def change(pile: dict[str, Any] | None, name: str, e: Any) -> dict[str, Any] | None:
    """The pile's state after the event (None: a pile we never saw registered)."""
    if name == "Registered":
        guns = {str(n): {"status": "offline", "plugged": False, "faults": []} for n in range(1, e.gun_count + 1)}
        return {"pile_no": e.pile_no, "tenant_id": e.tenant_id, "enabled": True, "online": False, "guns": guns}
    if pile is None:
        return None
    if name in ("Connected", "Disconnected"):
        pile["online"] = name == "Connected"
        if name == "Disconnected":
            for gun in pile["guns"].values():
                gun["status"] = "offline"
    elif name in ("Enabled", "Disabled"):
        pile["enabled"] = name == "Enabled"
    elif str(e.gun_no) in pile["guns"]:
        gun = pile["guns"][str(e.gun_no)]
        if name == "GunStatusChanged":
            gun["status"], gun["plugged"] = e.status, bool(e.plugged)
        elif name == "FaultRaised":
            gun["faults"] = [*(c for c in gun["faults"] if c != e.code), e.code]
        elif name == "FaultCleared":
            gun["faults"] = [c for c in gun["faults"] if c != e.code]
    return pile


def apply(cursor: Any, events: list[Any]) -> None:
    """Fold a batch of Registry events; enqueue a push for every gun whose code changed."""
    if not events:
        return
    ids = list(dict.fromkeys(e.originator_id for e in events))
    cursor.execute("SELECT pile_id, pile_no, tenant_id, enabled, online, guns FROM tcec_piles WHERE pile_id = ANY(%s) "
                   "FOR UPDATE", (ids,))
    piles: dict[UUID, dict[str, Any]] = {
        row[0]: {"pile_no": row[1], "tenant_id": row[2], "enabled": row[3], "online": row[4], "guns": row[5]}
        for row in cursor.fetchall()}
    peers = Outbox.peers(cursor, HEARERS)
    for e in events:
        name = type(e).__name__
        before = piles.get(e.originator_id)
        codes_before = {n: code(before, g) for n, g in before["guns"].items()} if before else {}
        after = change(copy.deepcopy(before), name, e)
        if after is None:
            continue
        piles[e.originator_id] = after
        for gun_no, gun in after["guns"].items():
            status = code(after, gun)
            if codes_before.get(gun_no, 0 if name == "Registered" else None) == status:
                continue
            connector = connector_code(after["pile_no"], int(gun_no))
            push = Push(INTERFACE, f"status:{connector}:{e.originator_version}", StationStatusNotification(
                ConnectorStatusInfo=ConnectorStatusInfo(ConnectorID=connector, Status=status)), f"connector:{connector}")
            for peer in peers.get(after["tenant_id"], []):
                if peer.configured <= e.timestamp:
                    Outbox.add(cursor, peer.peer_id, push, e.timestamp)
    for pile_id, p in piles.items():
        cursor.execute("INSERT INTO tcec_piles VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (pile_id) DO UPDATE SET "
                       "enabled = excluded.enabled, online = excluded.online, guns = excluded.guns",
                       (pile_id, p["pile_no"], p["tenant_id"], p["enabled"], p["online"], Jsonb(p["guns"])))
