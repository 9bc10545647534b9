"""The catalogue view: tenants, stations and tariffs as the operator console lists them.

Stations carry their time zone, which the dashboard uses to decide what "today" is at each station.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from projections.base import Item, View, on


class Catalogue(View):
    name = "catalogue"
    tables = ("catalogue_tenants", "catalogue_stations", "catalogue_tariffs")
    ddl = (
        """CREATE TABLE IF NOT EXISTS catalogue_tenants (
            tenant_id uuid PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS catalogue_stations (
            station_id uuid PRIMARY KEY, tenant_id uuid NOT NULL, name text NOT NULL, address text NOT NULL,
            latitude double precision NOT NULL, longitude double precision NOT NULL, timezone text NOT NULL,
            tariff_id uuid, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS catalogue_stations_tenant ON catalogue_stations (tenant_id, name)",
        """CREATE TABLE IF NOT EXISTS catalogue_tariffs (
            tariff_id uuid PRIMARY KEY, tenant_id uuid NOT NULL, name text NOT NULL, version int NOT NULL,
            schedule jsonb NOT NULL, created_at timestamptz NOT NULL, revised_at timestamptz NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS catalogue_tariffs_tenant ON catalogue_tariffs (tenant_id, name)",
    )

    @on("Registry", "Tenant.Created")
    def tenant_created(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("INSERT INTO catalogue_tenants VALUES (%s, %s, %s)", (e.originator_id, e.name, e.timestamp))

    @on("Registry", "Tenant.Renamed")
    def tenant_renamed(self, cur: Any, item: Item) -> None:
        cur.execute("UPDATE catalogue_tenants SET name = %s WHERE tenant_id = %s",
                    (item.event.name, item.event.originator_id))

    @on("Registry", "Station.Created")
    def station_created(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("INSERT INTO catalogue_stations VALUES (%s, %s, %s, %s, %s, %s, %s, NULL, %s, %s)",
                    (e.originator_id, e.tenant_id, e.name, e.address, e.latitude, e.longitude, e.timezone,
                     e.timestamp, e.timestamp))

    @on("Registry", "Station.Changed")
    def station_changed(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("UPDATE catalogue_stations SET name = %s, address = %s, updated_at = %s WHERE station_id = %s",
                    (e.name, e.address, e.timestamp, e.originator_id))

    @on("Registry", "Station.TariffAssigned")
    def station_tariff(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("UPDATE catalogue_stations SET tariff_id = %s, updated_at = %s WHERE station_id = %s",
                    (e.tariff_id, e.timestamp, e.originator_id))

    @on("Tariffs", "Tariff.Created")
    def tariff_created(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("INSERT INTO catalogue_tariffs VALUES (%s, %s, %s, 1, %s, %s, %s)",
                    (e.originator_id, e.tenant_id, e.name, Jsonb(e.schedule), e.timestamp, e.timestamp))

    @on("Tariffs", "Tariff.Revised")
    def tariff_revised(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("UPDATE catalogue_tariffs SET version = version + 1, schedule = %s, revised_at = %s "
                    "WHERE tariff_id = %s", (Jsonb(e.schedule), e.timestamp, e.originator_id))
