"""Our drivers' roaming over tenant shards: the peers' catalogue and the roaming charges of a driver's tenant's shard.

A tenant's peer links, its pulled catalogue (``tcec_peer_*``) and its drivers' wallets and roaming charges
all live on that tenant's shard (docs/shards.md, docs/interconnect.md "Shards"), so a driver's browse,
start, watch and stop must run on that shard's Store and Ledger. :class:`RoamingShards` holds, per shard,
one :class:`~adapters.interconnect.customer.browse.RoamingCatalogue` and (when the app serves drivers) one
:class:`~adapters.interconnect.customer.sessions.RoamingSessions`, made once when the door is mounted; each
call picks its shard from the tenant it names, which the driver API takes from the driver's token only.

On one shard there is one of each and no look-up: exactly what the app had before shards. On several, the
tenant's shard is asked of the shard directory (``shard_of_tenant``: cached for the process's life, a
placement never changes); a tenant placed on no shard is ``NotFound`` (404), never the directory shard's
objects by default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from adapters.interconnect.customer.browse import RoamingCatalogue
from adapters.interconnect.customer.sessions import RoamingSessions


@dataclass(frozen=True)
class ShardRoaming:
    """One shard's roaming objects, over its Store (and Ledger)."""

    catalogue: RoamingCatalogue
    sessions: RoamingSessions | None  # None when the app serves no drivers


class RoamingShards:
    """Each shard's :class:`ShardRoaming`, found by tenant; also the driver API's ``RoamingCatalogue``
    (``adapters/api/driver/roaming_stations.py``), each call on the shard of the tenant it names."""

    def __init__(self, shards: Mapping[str, ShardRoaming],
                 shard_of_tenant: Callable[[UUID], str] | None = None) -> None:
        """``shards``: name -> objects; ``shard_of_tenant`` (the directory's), required for more than one."""
        if not shards or (len(shards) > 1 and shard_of_tenant is None):
            raise ValueError("roaming needs one shard, or several and the directory that routes tenants to them")
        self.shards, self.shard_of_tenant = dict(shards), shard_of_tenant
        self._only = next(iter(self.shards.values())) if len(self.shards) == 1 else None

    def of(self, tenant_id: UUID) -> ShardRoaming:
        """The tenant's shard's objects (NotFound for a tenant on no shard). Blocking: may query the directory."""
        if self._only is not None:
            return self._only
        assert self.shard_of_tenant is not None
        name = self.shard_of_tenant(tenant_id)
        found = self.shards.get(name)
        if found is None:  # the directory names a shard this process was not given: a configuration error
            raise RuntimeError(f"tenant {tenant_id} is on shard {name}, which this API does not serve")
        return found

    def sessions(self, tenant_id: UUID) -> RoamingSessions:
        sessions = self.of(tenant_id).sessions
        if sessions is None:
            raise RuntimeError("this app serves no drivers: no roaming charges")
        return sessions

    # ---- the driver API's RoamingCatalogue, routed ------------------------------------------------------
    def stations(self, tenant_id: UUID, near: tuple[Decimal, Decimal] | None, limit: int) -> list[dict[str, Any]]:
        return self.of(tenant_id).catalogue.stations(tenant_id, near, limit)

    def station(self, tenant_id: UUID, operator_id: str, station_id: str, now: datetime) -> dict[str, Any] | None:
        return self.of(tenant_id).catalogue.station(tenant_id, operator_id, station_id, now)

    def close(self) -> None:
        for shard in self.shards.values():
            if shard.sessions is not None:
                shard.sessions.close()
