"""The console served with everything a charging pile needs: the driver API (payment channels on the
offline fakes of tests/payment_fakes.py), the relay, a real YKC gateway, and simulated piles over TCP
(``pile_link.simulator``), as tests/integration/test_driver_api.py runs them, here for a browser.

Import the fixtures into a browser test module (``from tests.browser.charging import console,
payment_keys``): its ``console`` then replaces the plain one of conftest.py, so the ``page`` fixture
(a Chromium tab that fails the test on any console error or CSP violation) opens this one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from adapters.api.guards import ServerSettings
from adapters.cli.relay import running_relay
from adapters.postgres.env import eventsourcing_env
from adapters.web.session import WebSettings
from domain.ledger import Ledger
from pile_link.gateway import Gateway
from pile_link.simulator import Fleet, PileConfig, PileSpec
from projections.runner import Projections
from tests.browser.conftest import Console
from tests.console import console_app
from tests.http_server import serving
from tests.integration.driver_app import KEYS, settings_for
from tests.payment_fakes import PayWorld

T = TypeVar("T")
FAST = PileConfig(heartbeat_interval=0.5, record_retry=0.5, reconnect_delay=0.1)


@dataclass
class ChargingConsole(Console):
    """The served console, and the gateway's event loop, where the simulated piles run too."""

    world: PayWorld | None = None
    loop: asyncio.AbstractEventLoop | None = None
    gateway: Gateway | None = None
    fleets: list[Fleet] = field(default_factory=list)

    def run(self, work: Awaitable[T], timeout: float = 60) -> T:
        """Run ``work`` on the piles' loop and wait for it."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)  # type: ignore[arg-type]

    def piles(self, *pile_nos: str, speed: float = 60, seed: int = 7) -> Fleet:
        """Simulated piles, guns plugged in, logged in to the gateway (returns once they are online)."""
        assert self.gateway is not None

        async def up() -> Fleet:
            fleet = Fleet("127.0.0.1", self.gateway.port, [PileSpec(no, guns=2, plugged=True) for no in pile_nos],
                          seed=seed, speed=speed, config=FAST)
            await fleet.start()
            return fleet

        fleet = self.run(up())
        self.fleets.append(fleet)
        return fleet

    def event(self, fleet: Fleet, kind: str, timeout: float = 30, **where: Any) -> Any:
        """Wait for a simulated pile's event (``model_received``, ``charging_started``, ``record_confirmed``...)."""
        return self.run(fleet.events.wait_for(kind, timeout=timeout, **where), timeout + 5)


@pytest.fixture
def payment_keys() -> str:
    return KEYS  # the channels of `world` open under the API's keys


@pytest.fixture
def console(ledger: Ledger, database_url: str, nats_url: str, world: PayWorld) -> Iterator[ChargingConsole]:
    app = console_app(ledger, database_url, WebSettings(stream_poll=0.2, screen_tick=0.5), driver=settings_for(world))
    projections = Projections(ledger.applications, eventsourcing_env(database_url))
    stop = threading.Event()
    views = threading.Thread(target=projections.run_forever, args=(stop,), name="views", daemon=True)
    views.start()
    loop = asyncio.new_event_loop()
    piles = threading.Thread(target=loop.run_forever, name="piles", daemon=True)
    piles.start()
    try:
        with running_relay(ledger, database_url, nats_url) as relay:
            deadline = time.monotonic() + 30
            while not relay.caught_up():  # what was written before the gateway follows only new commands
                assert time.monotonic() < deadline, "the relay did not catch up"
                time.sleep(0.02)
            gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, sweep_interval=3600)
            asyncio.run_coroutine_threadsafe(gateway.start(), loop).result(30)
            served = None
            try:
                with serving(app, ServerSettings()) as port:
                    served = ChargingConsole(f"http://127.0.0.1:{port}", app, ledger, projections, world, loop, gateway)
                    yield served
            finally:
                for fleet in served.fleets if served else []:
                    asyncio.run_coroutine_threadsafe(fleet.close(), loop).result(30)
                asyncio.run_coroutine_threadsafe(gateway.stop(), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        piles.join(timeout=10)
        stop.set()
        views.join(timeout=30)
        projections.close()
