"""The operator API, ``/operator/v1``: one router made of one router per concern.

| module        | endpoints                                                                  |
|---------------|----------------------------------------------------------------------------|
| accounts.py   | sign-in, logout, own password; operator users (``/auth/*``, ``/users*``)     |
| registry.py   | tenants, stations, piles and their guns with live status                   |
| frames.py     | a pile's newest frames in and out, decoded (the gateway's frame log)       |
| tariffs.py    | tariffs and their versions; which tariff a station or a pile charges by    |
| orders.py     | orders (cursor, one with its timeline, CSV), revenue, the dashboard        |
| alarms.py     | alarms and acknowledging them; the operation log                           |
| dashboard.py  | the big screen's figures: power curve, top stations, all of it in one answer |
| commands.py   | remote start, stop, force-close, reboot, push tariff; refunds              |
| peers.py      | T/CEC peers with their link health, roaming orders per peer, settlement    |

What they share (the caller, their scope, the examples) is in deps.py; who may do what is said there.
"""

from __future__ import annotations

from fastapi import APIRouter

from adapters.api.operator import accounts, alarms, commands, dashboard, frames, orders, peers, registry, tariffs

router = APIRouter()
for part in (accounts, registry, frames, tariffs, orders, dashboard, alarms, commands, peers):
    router.include_router(part.router)
