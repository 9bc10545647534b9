"""What the seed chooses: the next step, and the faults injected into it.

Every choice is drawn from the world's ``random.Random(seed)``, in a fixed order, so a seed is one
schedule and replays exactly. Steps are the actors' actions (a driver's request, a pile's tick, a
message delivered, a gateway following the log, a watchdog sweep, a pile dropping or logging in).
The faults:

* ``crash``: the process running the step dies after its n-th commit (1-3): what it was to do next
  is never done, its caches are gone, and a new process starts on the store;
* ``lost_message`` / ``repeated_message``: a message is delivered never (its connection breaks) or
  twice (the copy stays in flight and may come much later);
* ``late_record``: a transaction record settled on a session the watchdog had already abandoned or
  failed (re-priced); made likely by ``pile_vanished`` (a pile gone until the drain) and delays;
* ``clock_jump``: the clock moves 10-45 minutes at once;
* ``concurrent_wallet``: while one API process commits a driver's command, another commits a
  second command on the same wallet first (two starts, a top-up and a refund, a start and a
  top-up): the first's version check must catch it and run it again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Simulation = Any  # simulation.runner.Simulation, which asks this module for each step

CRASH_P = 0.08
LOST_P = 0.05
REPEATED_P = 0.06
APIS = ("api-1", "api-2")


def choose(sim: Simulation) -> tuple[str, str, Callable[[], None]]:
    """(description, process it runs in, the step) for the next step, faults armed."""
    world, rng = sim.world, sim.world.rng
    crash_after = rng.randint(1, 3) if rng.random() < CRASH_P else None
    world.arm(crash_after)
    options: list[tuple[int, str]] = [(10, "start"), (4, "stop"), (3, "top_up"), (2, "refund"), (2, "refund_result"),
                                      (2, "adjust"), (12, "pile_tick"), (6, "gateway_follow"), (5, "watchdog"),
                                      (2, "pile_drop"), (4, "pile_login"), (1, "clock_jump"), (4, "concurrent")]
    if sim.network.in_flight:
        options.append((30, "deliver"))
    total = sum(w for w, _ in options)
    pick = rng.uniform(0, total)
    for weight, name in options:
        pick -= weight
        if pick <= 0:
            break
    return STEPS[name](sim)


def _driver_step(name: str) -> Callable[[Simulation], tuple[str, str, Callable[[], None]]]:
    def step(sim: Simulation) -> tuple[str, str, Callable[[], None]]:
        rng = sim.world.rng
        driver = rng.choice(sim.api.drivers)
        process = rng.choice(APIS)
        retry = rng.random() < 0.5
        action = getattr(sim.api, name)
        if name in ("start", "top_up"):
            return f"{name} {driver.driver_id}", process, lambda: action(driver, process, retry)
        return f"{name} {driver.driver_id}", process, lambda: action(driver, process)
    return step


def concurrent(sim: Simulation) -> tuple[str, str, Callable[[], None]]:
    """Two commands on one wallet in two API processes: the second commits inside the first's."""
    rng = sim.world.rng
    driver = rng.choice(sim.api.drivers)
    first, second = rng.choice((("start", "start"), ("top_up", "refund"), ("start", "top_up"), ("refund", "start"),
                                ("adjust", "start")))
    api = sim.api

    def run(name: str, process: str) -> None:
        action = getattr(api, name)
        if name in ("start", "top_up"):
            action(driver, process, False)
        else:
            action(driver, process)

    def step() -> None:
        def interleaved() -> None:
            sim.world.faults["concurrent_wallet"] += 1
            run(second, "api-2")
        sim.world.interleave = interleaved
        run(first, "api-1")
        sim.world.interleave = None
    return f"concurrent {driver.driver_id} {first}+{second}", "api-1", step


def pile_tick(sim: Simulation) -> tuple[str, str, Callable[[], None]]:
    pile = sim.world.rng.choice(sim.piles)
    return f"tick {pile.pile_no}", "", pile.tick


def deliver(sim: Simulation) -> tuple[str, str, Callable[[], None]]:
    world, network = sim.world, sim.network
    index = world.rng.randrange(len(network.in_flight))
    message = network.in_flight[index]
    droppable = message.kind not in ("login", "closed")
    roll = world.rng.random()
    if droppable and roll < LOST_P:
        network.take(index)

        def lose() -> None:
            world.faults["lost_message"] += 1
            pile = sim.pile(message.pile_no)
            if pile.online and pile.conn == message.conn:
                pile.disconnect()  # a frame lost on TCP: the connection broke
        return f"lose {message}", "", lose
    if droppable and roll < LOST_P + REPEATED_P:
        world.faults["repeated_message"] += 1
        network.in_flight.insert(world.rng.randrange(len(network.in_flight) + 1), message)
    network.take(network.in_flight.index(message))
    process = "gateway" if message.to == "gateway" else ""
    return f"deliver {message}", process, lambda: sim.deliver(message)


def pile_drop(sim: Simulation) -> tuple[str, str, Callable[[], None]]:
    online = [p for p in sim.piles if p.online]
    if not online:
        return "nothing", "", lambda: None
    pile = sim.world.rng.choice(online)
    vanish = sim.world.rng.random() < 0.3

    def drop() -> None:
        pile.disconnect()
        if vanish:
            pile.vanished = True
            sim.world.faults["pile_vanished"] += 1
    return f"drop {pile.pile_no}{' for good' if vanish else ''}", "", drop


def pile_login(sim: Simulation) -> tuple[str, str, Callable[[], None]]:
    offline = [p for p in sim.piles if not p.online and not p.vanished]
    if not offline:
        return "nothing", "", lambda: None
    pile = sim.world.rng.choice(offline)
    return f"login {pile.pile_no}", "", pile.login


def clock_jump(sim: Simulation) -> tuple[str, str, Callable[[], None]]:
    minutes = sim.world.rng.randint(10, 45)

    def jump() -> None:
        sim.world.faults["clock_jump"] += 1
        sim.world.advance(minutes * 60)
    return f"clock +{minutes} min", "", jump


STEPS: dict[str, Callable[[Simulation], tuple[str, str, Callable[[], None]]]] = {
    **{name: _driver_step(name) for name in ("start", "stop", "top_up", "refund", "refund_result", "adjust")},
    "concurrent": concurrent, "pile_tick": pile_tick, "deliver": deliver, "pile_drop": pile_drop,
    "pile_login": pile_login, "clock_jump": clock_jump,
    "gateway_follow": lambda sim: ("gateway follows", "gateway", sim.gateway.follow),
    "watchdog": lambda sim: ("watchdog sweeps", "watchdog", sim.sweep),
}
