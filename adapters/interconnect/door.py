"""The HTTP door of T/CEC: ``POST /evcs/v1/{interface}`` on the API's app, added by :func:`mount`.

The API does not import the interconnect: ``chargeledger api`` calls ``mount(app, settings)`` on the
app ``create_app`` returned, when ``CHARGELEDGER_INTERCONNECT_KEYS`` is set. The route reads the raw
body (the MAC is over ``Data`` exactly as sent, so nothing may re-encode it before the pipeline),
runs :class:`~adapters.interconnect.service.Door` in the thread pool, and always answers HTTP 200
with a response envelope (``Content-Type: application/json;charset=utf-8``), refusals included, as
peers expect. Bodies are capped by the API's ``BodyLimits`` (64 KiB; ``check_charge_orders``, a
day's orders, 4 MiB); a larger one gets the API's 413 before any of this runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapters.interconnect.customer.browse import RoamingCatalogue
from adapters.interconnect.customer.driver_api import roaming_router
from adapters.interconnect.customer.sessions import RoamingSessions
from adapters.interconnect.customer.shards import RoamingShards, ShardRoaming
from adapters.interconnect.handlers import handlers as default_handlers
from adapters.interconnect.service import Door, Services
from adapters.interconnect.shards import ShardedDoor, sharded_door
from adapters.interconnect.store.directory import Store
from adapters.interconnect.store.peers import KEYS_SETTING
from adapters.interconnect.store.schema import create_schema
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.peer import Peer
from adapters.interconnect.tcec.receive import WINDOW
from adapters.interconnect.tcec.routing import Handlers
from adapters.payments.config import SecretBox

PREFIX = "/evcs/v1"
MEDIA_TYPE = "application/json;charset=utf-8"


@dataclass(frozen=True)
class InterconnectSettings:
    keys: str  # CHARGELEDGER_INTERCONNECT_KEYS: kid=base64 of 32 bytes[,...], the first one sealing
    window: timedelta = WINDOW  # CHARGELEDGER_TCEC_WINDOW_S: how far a TimeStamp may be from our clock
    max_body: int = 64 * 1024
    max_check_body: int = 4 * 1024 * 1024  # check_charge_orders: a day's orders

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> InterconnectSettings | None:
        """None when ``CHARGELEDGER_INTERCONNECT_KEYS`` is unset: the API then serves no T/CEC door."""
        env = os.environ if environ is None else environ
        keys = env.get(KEYS_SETTING, "")
        if not keys:
            return None
        SecretBox.from_setting(keys)  # a malformed setting fails at start, not at the first call
        return cls(keys, timedelta(seconds=int(env.get("CHARGELEDGER_TCEC_WINDOW_S", WINDOW.total_seconds()))))


def router(door: Door | ShardedDoor) -> APIRouter:
    routes = APIRouter(prefix=PREFIX, include_in_schema=False)  # documented in docs/interconnect.md

    @routes.post("/{interface}")
    async def evcs(interface: str, request: Request) -> Response:
        body = await request.body()
        envelope = await run_in_threadpool(door.answer, interface, body, request.headers.get("authorization"))
        return Response(wire.dumps(envelope.body()).encode("utf-8"), media_type=MEDIA_TYPE)

    return routes


def mount(app: FastAPI, settings: InterconnectSettings, *, handlers: Handlers | None = None,
          http_for: Callable[[Peer], httpx.Client] | None = None) -> Door | ShardedDoor:
    """Serve T/CEC on ``app`` (from ``create_app``: its ``state.pool``, ``state.ledger``, ``state.body_limits``),
    give the driver API its peers' catalogue (``state.roaming_catalogue``) and, when the app serves
    drivers, the driver API's roaming charges (``customer/driver_api.py``; ``http_for``: the HTTP client
    for a peer, the tests' own). On several tenant shards (``state.shards``), a door per shard, each
    envelope routed to the shard of the peer that signs it (adapters/interconnect/shards.py), and a
    catalogue and roaming charges per shard, each driver's call on their tenant's (customer/shards.py)."""
    box = SecretBox.from_setting(settings.keys)
    served = handlers or default_handlers
    shards = getattr(app.state, "shards", None)
    identity = getattr(app.state, "driver_identity", None)
    door: Door | ShardedDoor
    roaming: RoamingShards
    if shards is not None and len(shards.all) > 1:
        by_name = {shard.name: shard for shard in shards.all}
        for shard in shards.all:
            create_schema(shard.pool)
        door = sharded_door(shards, box, lambda name, shard_store: Door(
            Services(shard_store, by_name[name].ledger), served, window=settings.window))
        roaming = RoamingShards({name: _roaming_side(shard_store, None, lambda shard=by_name[name]: shard.ledger,
                                                     http_for, drivers=identity is not None)
                                 for name, shard_store in door.stores.items()}, shards.directory.shard_of_tenant)
    else:
        store = Store(app.state.pool, box)
        create_schema(app.state.pool)
        ledger = getattr(app.state, "ledger", None)
        door = Door(Services(store, ledger), served, window=settings.window)
        side = _roaming_side(store, ledger, None, http_for, drivers=identity is not None and ledger is not None)
        roaming = RoamingShards({shards.home.name if shards is not None else "main": side})
        if side.sessions is not None:
            app.state.roaming = side.sessions  # the one shard's: what the app always had
    app.state.interconnect = door
    app.state.roaming_shards = roaming
    app.state.roaming_catalogue = roaming  # the driver API's roaming stations (it cannot import us), by tenant
    app.state.body_limits.cap(PREFIX + "/", settings.max_body)
    app.state.body_limits.cap(PREFIX + "/check_charge_orders", settings.max_check_body)
    app.include_router(router(door))
    if any(side.sessions is not None for side in roaming.shards.values()):
        sides = app.state.driver_sides  # the driver API's objects per shard (adapters/api/driver/sides.py)
        app.include_router(roaming_router(roaming, identity, lambda tenant_id: sides.of(tenant_id).sessions))
    return door


def _roaming_side(store: Store, ledger: Any, ledger_of: Callable[[], Any] | None,
                  http_for: Callable[[Peer], httpx.Client] | None, *, drivers: bool) -> ShardRoaming:
    """One shard's catalogue and, when the app serves drivers, its roaming charges (the shard's Ledger
    given, or made on first use by ``ledger_of``)."""
    sessions = RoamingSessions(ledger, store, http_for=http_for, ledger_of=ledger_of) if drivers else None
    return ShardRoaming(RoamingCatalogue(store), sessions)
