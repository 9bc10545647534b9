"""Drivers arriving at the guns, so a fleet left to itself looks like a station in use.

Each gun gets a driver loop with its own seeded ``random.Random``: a car arrives after an
exponentially distributed wait (mean ``mean_arrival`` simulated seconds) and is plugged in. A
share of drivers then swipe a card (0x31); the others wait for the platform's remote start (a
driver using the app). A driver whose charge has not started within ``patience`` leaves; one
whose charge ended unplugs after a few minutes and drives off.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass

from pile_link.simulator.connection import stop_task
from pile_link.simulator.fleet import Fleet
from pile_link.simulator.pile import SimPile
from pile_link.simulator.spec import SimulatorError


@dataclass(frozen=True)
class DriverConfig:
    mean_arrival: float = 1800.0  # sim s between a car leaving and the next arriving, on average
    patience: float = 600.0  # sim s a driver waits for the charge to start
    cards: tuple[bytes, ...] = ()  # physical card numbers drivers swipe
    card_share: float = 0.0  # fraction of drivers who swipe a card instead of using the app


class Drivers:
    """Start with :meth:`start`; :meth:`stop` cancels every driver loop."""

    def __init__(self, fleet: Fleet, config: DriverConfig) -> None:
        if config.card_share > 0 and not config.cards:
            raise ValueError("card_share > 0 needs at least one card")
        self.fleet = fleet
        self.config = config
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for pile in self.fleet.piles:
            for gun in pile.guns:
                rng = random.Random(f"{self.fleet.seed}/driver/{pile.pile_no}/{gun.no}")
                self._tasks.append(asyncio.create_task(self._drive(pile, gun.no, rng)))

    async def stop(self) -> None:
        await asyncio.gather(*(stop_task(task) for task in self._tasks))

    async def _drive(self, pile: SimPile, gun_no: int, rng: random.Random) -> None:
        cfg, clock = self.config, self.fleet.clock
        gun = pile.gun(gun_no)
        while not pile.stopped:
            await clock.sleep(rng.expovariate(1.0 / cfg.mean_arrival))
            if gun.plugged or gun.faults:
                continue
            pile.plug(gun_no)
            if cfg.card_share and rng.random() < cfg.card_share and pile.online:
                with contextlib.suppress(SimulatorError):
                    await pile.swipe_card(gun_no, rng.choice(cfg.cards))
            waited = 0.0
            while not gun.charging and waited < cfg.patience:  # the app user waits for a remote start
                await clock.sleep(10.0)
                waited += 10.0
            while gun.charging:
                await clock.sleep(30.0)
            await clock.sleep(rng.uniform(60.0, 600.0))  # back to the car
            pile.unplug(gun_no)
