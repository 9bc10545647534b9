"""The demo's charging network, kept running after the scripted day (``chargeledger demo --serve``).

The YKC gateway on a free TCP port and simulated piles logged in to it over real TCP, sped up
:data:`SPEED` times, with drivers arriving at every gun and charging, one after another, until the
demo stops (``pile_link.simulator.drivers.Drivers``):

* about half of them swipe a card bound to one of the fleet's demo wallets (0x31, a hold, 0x32);
* the others start from the app: a car plugged in without a card swipe gets a start from
  :class:`AppStarts` (the ledger's ``request_start``; the 0x34 reaches the pile through NATS);
* the counter tops the fleet's wallets up in cash whenever one runs low, so charging never stops.

One pile (:data:`H5_PILE`, its guns plugged in) is left to a person: no simulated driver uses it,
so the driver H5 page's "start" finds it free.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from domain.clock import utcnow
from domain.errors import DomainError
from domain.ledger import Ledger
from pile_link.gateway import Gateway
from pile_link.simulator import Event, Fleet, PileSpec, pile_numbers
from pile_link.simulator.drivers import DriverConfig, Drivers

log = logging.getLogger("chargeledger")

SPEED = 20  # simulated seconds per real second: a car charges in two or three minutes
SEED = 11
RIVERSIDE_PILES = pile_numbers("32010600019250", 2)
H5_PILE = "32010600019260"
FLEET_DRIVERS = tuple(f"fleet-driver-{i}" for i in range(1, 5))
CARDS = tuple(f"00000000D000000{i}" for i in range(1, 5))  # one per fleet driver's wallet
APP_HOLD_FEN = 100_00
LOW_FEN, REFILL_FEN = 1_000_00, 3_000_00  # the counter tops a wallet up by REFILL below LOW
APP_AFTER = 2.0  # real seconds a plugged car waits without a card before its driver taps "start"


@dataclass
class Network:
    """What the live part runs on: the demo tenant, its stations, the piles that charge, the person's pile."""

    tenant: UUID
    station: UUID
    tariff: UUID
    piles: list[str]  # the simulated drivers' piles, each with 2 guns
    wallets: dict[str, UUID] = field(default_factory=dict)  # the fleet's drivers


def build_network(ledger: Ledger, tenant: UUID, station: UUID, tariff: UUID, day_piles: list[str]) -> Network:
    """On the scripted day's tenant: its piles charge again, a second station with two more piles, the
    person's pile, and the fleet's drivers with their cards and a first top-up at the counter."""
    riverside = ledger.create_station(tenant, "Xuhui Riverside", "2000 Longteng Ave, Xuhui, Shanghai",
                                      31.1794, 121.4578, "ops@demo")
    ledger.assign_tariff(tariff, "ops@demo", station_id=riverside)
    for pile_no in RIVERSIDE_PILES:
        ledger.register_pile(riverside, pile_no, "DC", 2, "ops@demo")
    ledger.register_pile(station, H5_PILE, "DC", 2, "ops@demo")
    network = Network(tenant, station, tariff, [*day_piles, *RIVERSIDE_PILES])
    for driver, card in zip(FLEET_DRIVERS, CARDS):
        wallet = ledger.open_wallet(tenant, driver, driver)
        ledger.bind_credential(wallet, "card", card, driver)
        network.wallets[driver] = wallet
        top_up(ledger, wallet, driver, 0)
    return network


def top_up(ledger: Ledger, wallet: UUID, driver: str, n: int) -> None:
    ledger.top_up(wallet, key=f"counter:{driver}:{n}", amount=REFILL_FEN, provider="cash",
                  payment_ref=f"counter-receipt-{driver}-{n}")


class AppStarts:
    """Drivers using the app: a car plugged in that no card started after :data:`APP_AFTER` seconds gets
    a start from the platform (``request_start``, a hold of :data:`APP_HOLD_FEN`), once per arrival."""

    def __init__(self, gateway: Gateway, ledger: Ledger, wallets: dict[str, UUID]) -> None:
        self.gateway, self.ledger = gateway, ledger
        self.wallets = itertools.cycle(wallets.items())
        self.waiting: dict[tuple[str, int], float] = {}
        self.started = 0

    def see(self, event: Event) -> None:
        """A fleet event (called in the fleet's loop): who arrived, who swiped, who left."""
        if event.gun is None:
            return
        key = (event.pile_no, event.gun)
        if event.kind == "plugged":
            self.waiting[key] = asyncio.get_running_loop().time()
        elif event.kind in ("card_swiped", "unplugged", "charging_started", "remote_start"):
            self.waiting.pop(key, None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.5)
            due = [key for key, since in self.waiting.items() if loop.time() - since >= APP_AFTER]
            for pile_no, gun in due:
                self.waiting.pop((pile_no, gun), None)
                driver, wallet = next(self.wallets)
                try:
                    await self.gateway.run(self.ledger.request_start, pile_no=pile_no, gun_no=gun, wallet_id=wallet,
                                           hold_fen=APP_HOLD_FEN, at=utcnow(), author=driver, require_ready=True)
                    self.started += 1
                except DomainError as refused:  # busy after all, offline, the wallet short: the car leaves
                    log.info("demo: app start on %s-%s refused: %s", pile_no, gun, refused)


class LiveFleet:
    """The gateway, the simulated piles and their drivers; :meth:`start`, then :meth:`stop`."""

    def __init__(self, ledger: Ledger, network: Network, database_url: str, nats_url: str) -> None:
        self.ledger, self.network = ledger, network
        # sped up, the platform's ~0.2 s to act on a reading is seconds of charging: a wider balance margin
        self.gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, port=0, sweep_interval=2.0,
                               balance_margin_fen=400)
        self.fleet: Fleet | None = None
        self.person: Fleet | None = None  # the H5 pile, nobody simulated drives it
        self.drivers: Drivers | None = None
        self.app_starts = AppStarts(self.gateway, ledger, network.wallets)
        self.refills = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._gateway_up = False

    @property
    def piles(self) -> list[str]:
        return [*self.network.piles, H5_PILE]

    async def start(self) -> None:
        await self.gateway.start()
        self._gateway_up = True
        self.fleet = Fleet("127.0.0.1", self.gateway.port, [PileSpec(no, guns=2) for no in self.network.piles],
                           seed=SEED, speed=SPEED)
        self.person = Fleet("127.0.0.1", self.gateway.port, [PileSpec(H5_PILE, guns=2, plugged=True)],
                            seed=SEED, speed=SPEED)
        self.fleet.events.subscribe(self.app_starts.see)
        await asyncio.gather(self.fleet.start(), self.person.start())
        ready = asyncio.get_running_loop().time() + 30  # a pile charges only with the platform's billing model
        piles = [*self.fleet.piles, *self.person.piles]
        while any(p.model is None for p in piles) and asyncio.get_running_loop().time() < ready:
            await asyncio.sleep(0.05)
        self.drivers = Drivers(self.fleet, DriverConfig(mean_arrival=240.0, patience=300.0, cards=tuple(
            bytes.fromhex(c) for c in CARDS), card_share=0.5))
        self.drivers.start()
        self._tasks = [asyncio.create_task(self.app_starts.run(), name="app starts"),
                       asyncio.create_task(self._counter(), name="counter")]

    async def _counter(self) -> None:
        """Cash at the counter for any fleet wallet running low (the trial balance stays zero)."""
        while True:
            await asyncio.sleep(5)
            for driver, wallet in self.network.wallets.items():
                try:
                    if (await self.gateway.run(self.ledger.wallet, wallet)).available < LOW_FEN:
                        self.refills += 1
                        await self.gateway.run(top_up, self.ledger, wallet, driver, self.refills)
                except DomainError as refused:
                    log.warning("demo: the counter could not top up %s: %s", driver, refused)

    def charging(self) -> tuple[int, int]:
        """(guns charging, guns) of the simulated fleet, the person's pile included."""
        guns = [g for f in (self.fleet, self.person) if f is not None for p in f.piles for g in p.guns]
        return sum(1 for g in guns if g.charging), len(guns)

    def finished(self) -> int:
        """Charges whose record the platform confirmed (settled) since the live part began."""
        return sum(1 for f in (self.fleet, self.person) if f is not None for _ in f.events.find("record_confirmed"))

    async def stop(self, drain: float = 8.0) -> list[str]:
        """Drivers go home, every charge is stopped at its pile and its record settled (at most ``drain``
        seconds), the piles hang up, the gateway stops. Returns the records still unconfirmed. Stops
        whatever :meth:`start` got to, once."""
        if self.drivers is not None:
            await self.drivers.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        fleets = [f for f in (self.fleet, self.person) if f is not None]
        self.drivers, self._tasks, self.fleet, self.person = None, [], None, None
        left = await asyncio.gather(*(f.drain(drain) for f in fleets))
        await asyncio.gather(*(f.close() for f in fleets))
        if self._gateway_up:
            self._gateway_up = False
            await self.gateway.stop()
        return [r for unconfirmed in left for r in unconfirmed]
