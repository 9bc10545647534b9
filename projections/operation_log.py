"""The operation log: who changed what and when, straight from the events that carry an author.

One row per event, keyed by (application, notification id), so it can be neither lost nor counted
twice. ``at`` is the event's own timestamp (when it was recorded, UTC). The row keeps the event's
arguments except bulky copies (tariff schedules appear as their version, not 48 slots).
``operation_owners`` remembers each aggregate's tenant and station from its creation event, so
later events (which carry only the aggregate id) land in the right tenant's log.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from projections.base import Item, View, jsonable, on

HIDDEN = {"originator_id", "originator_version", "originator_topic", "timestamp", "author", "schedule", "tariff"}

LOG = """
INSERT INTO operation_log (application, notification_id, tenant_id, station_id, aggregate_type, aggregate_id,
                           event, author, at, detail)
SELECT %(application)s, %(nid)s, o.tenant_id, o.station_id, %(aggregate_type)s, %(aggregate_id)s, %(event)s,
       %(author)s, %(at)s, %(detail)s
FROM operation_owners o WHERE o.aggregate_id = %(owner)s"""


class OperationLog(View):
    name = "operation_log"
    tables = ("operation_log", "operation_owners")
    ddl = (
        """CREATE TABLE IF NOT EXISTS operation_log (
            application text NOT NULL, notification_id bigint NOT NULL, tenant_id uuid NOT NULL, station_id uuid,
            aggregate_type text NOT NULL, aggregate_id uuid NOT NULL, event text NOT NULL, author text NOT NULL,
            at timestamptz NOT NULL, detail jsonb NOT NULL, PRIMARY KEY (application, notification_id))""",
        "CREATE INDEX IF NOT EXISTS operation_log_tenant ON operation_log (tenant_id, at DESC)",
        """CREATE TABLE IF NOT EXISTS operation_owners (
            aggregate_id uuid PRIMARY KEY, tenant_id uuid NOT NULL, station_id uuid)""",
    )

    def _owner(self, cur: Any, aggregate_id: Any, tenant_id: Any, station_id: Any = None) -> None:
        cur.execute("INSERT INTO operation_owners VALUES (%s, %s, %s) ON CONFLICT (aggregate_id) DO UPDATE "
                    "SET tenant_id = EXCLUDED.tenant_id, station_id = EXCLUDED.station_id",
                    (aggregate_id, tenant_id, station_id))

    def _log(self, cur: Any, item: Item, owner: Any = None) -> None:
        e = item.event
        aggregate_type, event_name = item.name.split(".", 1)
        detail = {k: v for k, v in vars(e).items() if k not in HIDDEN}
        if item.name == "Tariff.Revised" or item.name == "Tariff.Created":
            detail["tiers"] = jsonable(e.schedule.get("prices", {}))
        cur.execute(LOG, {"application": item.application, "nid": item.notification_id,
                          "aggregate_type": aggregate_type, "aggregate_id": e.originator_id, "event": event_name,
                          "author": str(getattr(e, "author", "") or ""), "at": e.timestamp,
                          "detail": Jsonb(jsonable(detail)), "owner": owner or e.originator_id})

    # creation events: remember the owner, then log
    @on("Registry", "Tenant.Created")
    def tenant_created(self, cur: Any, item: Item) -> None:
        self._owner(cur, item.event.originator_id, item.event.originator_id)
        self._log(cur, item)

    @on("Registry", "Station.Created")
    def station_created(self, cur: Any, item: Item) -> None:
        self._owner(cur, item.event.originator_id, item.event.tenant_id, item.event.originator_id)
        self._log(cur, item)

    @on("Registry", "Pile.Registered")
    def pile_registered(self, cur: Any, item: Item) -> None:
        self._owner(cur, item.event.originator_id, item.event.tenant_id, item.event.station_id)
        self._log(cur, item)

    @on("Registry", "Pile.Moved")
    def pile_moved(self, cur: Any, item: Item) -> None:
        self._log(cur, item)  # logged under the station it left, then owned by the new one
        cur.execute("UPDATE operation_owners SET station_id = %s WHERE aggregate_id = %s",
                    (item.event.station_id, item.event.originator_id))

    @on("Tariffs", "Tariff.Created")
    def tariff_created(self, cur: Any, item: Item) -> None:
        self._owner(cur, item.event.originator_id, item.event.tenant_id)
        self._log(cur, item)

    @on("Sessions", "ChargingSession.Opened")
    def session_opened(self, cur: Any, item: Item) -> None:
        self._owner(cur, item.event.originator_id, item.event.tenant_id, item.event.station_id)
        self._log(cur, item)

    @on("Wallets", "Wallet.Opened")
    def wallet_opened(self, cur: Any, item: Item) -> None:
        self._owner(cur, item.event.originator_id, item.event.tenant_id)
        self._log(cur, item)

    @on("Wallets", "Credential.Bound")
    def credential_bound(self, cur: Any, item: Item) -> None:
        self._owner(cur, item.event.originator_id, item.event.tenant_id)
        self._log(cur, item)

    # later events: logged under the owner remembered above
    @on("Registry", "Tenant.Renamed", "Station.Changed", "Station.TariffAssigned", "Pile.Enabled", "Pile.Disabled",
        "Pile.TariffAssigned", "Pile.CommandRequested")
    @on("Tariffs", "Tariff.Revised")
    @on("Sessions", "ChargingSession.StopRequested", "ChargingSession.Failed", "ChargingSession.Abandoned")
    @on("Wallets", "Wallet.Adjusted", "Credential.Unbound")
    def changed(self, cur: Any, item: Item) -> None:
        self._log(cur, item)
