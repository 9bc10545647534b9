"""``tcec_station_profiles``: what T/CEC's StationInfo asks of a station that our registry does not keep.

The registry has a station's name, address, coordinates and time zone; ``query_stations_info`` also
needs its administrative area (GB/T 2260 code), a service telephone, its type (public, dedicated...),
the kind of site it is on and its parking spaces. An operator sets them per station
(``chargeledger peers station``); a station without a profile is listed with :data:`DEFAULTS` (area
``000000``, "not set"; a public station of another kind of site, no service telephone).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from adapters.interconnect.tcec.models import codes
from domain.errors import DomainError
from domain.text import checked


class ProfileError(DomainError):
    code = "tcec_profile_invalid"


@dataclass(frozen=True)
class StationProfile:
    area_code: str = "000000"
    service_tel: str = ""
    station_type: int = codes.StationType.PUBLIC
    construction: int = codes.Construction.OTHER
    park_nums: int = 0


DEFAULTS = StationProfile()


class Profiles:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def set(self, tenant_id: UUID, station_id: UUID, profile: StationProfile, now: datetime,
            alongside: Callable[[Any], object] | None = None) -> None:
        """Set a station's profile; ``alongside(cursor)`` runs in the same transaction (the regulators'
        push of the station's new entry, ``outbox/stations.py::profile_changed``)."""
        if not re.fullmatch(r"\d{6}", profile.area_code):
            raise ProfileError("area_code is 6 digits (GB/T 2260)", field="area_code")
        checked(profile.service_tel, "service_tel", 30)
        try:
            codes.StationType(profile.station_type)
            codes.Construction(profile.construction)
        except ValueError as error:
            raise ProfileError(str(error), field="station_type/construction") from None
        if not 0 <= profile.park_nums <= 100_000:
            raise ProfileError("park_nums is 0 to 100000", field="park_nums")
        with self.pool.connection() as conn:
            try:
                owner = conn.execute("SELECT tenant_id FROM catalogue_stations WHERE station_id = %s",
                                     (station_id,)).fetchone()
            except psycopg.errors.UndefinedTable:
                raise ProfileError("the catalogue view is not built yet (chargeledger projections)") from None
            if owner is None or owner[0] != tenant_id:
                raise ProfileError(f"no station {station_id} of tenant {tenant_id} in the catalogue view",
                                   field="station_id")
            conn.execute(
                "INSERT INTO tcec_station_profiles VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (station_id) "
                "DO UPDATE SET area_code = excluded.area_code, service_tel = excluded.service_tel, station_type = "
                "excluded.station_type, construction = excluded.construction, park_nums = excluded.park_nums, "
                "updated_at = excluded.updated_at",
                (station_id, tenant_id, profile.area_code, profile.service_tel, int(profile.station_type),
                 int(profile.construction), profile.park_nums, now))
            if alongside is not None:
                with conn.cursor() as cursor:
                    alongside(cursor)
