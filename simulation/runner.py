"""Run a seed: its steps with the invariants checked after each, then a drain to quiescence; and the CLI.

``chargeledger simulate-faults --seeds N [--from S] [--seed S] [--steps K] [-v]`` runs seeds
``S..S+N-1`` (or the one ``--seed``), prints the seeds per second, the schedules and steps run and
the faults injected by kind; a failing seed prints ``seed S failed at step K: <invariant>`` and the
command that replays it (the same seed is the same trace: ``-v`` prints it).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from domain.errors import DomainError
from domain.ledger import Ledger
from adapters.followers.watchdog import FOLLOWUP_GRACE
from simulation.drivers import Api
from simulation.invariants import Auditor, Violation
from simulation.piles import Message, Network, Pile
from simulation.platform import Gateway, Watchdog
from simulation.schedule import choose
from simulation.world import PILES, Crash, World

STEPS = 60  # steps per seed before the drain
DRAIN_ROUNDS = 200  # at most, each DRAIN_MINUTE of simulated time
DRAIN_MINUTE = 300


@dataclass
class Result:
    seed: int
    steps: int = 0
    failed_at: int | None = None
    invariant: str = ""
    detail: str = ""
    faults: Counter[str] = field(default_factory=Counter)
    trace: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed_at is None

    @property
    def trace_hash(self) -> str:
        return hashlib.sha256("\n".join(self.trace).encode()).hexdigest()


class Simulation:
    def __init__(self, seed: int) -> None:
        self.world = World(seed)
        self.network = Network()
        self.piles = [Pile(p, self.world, self.network) for p in PILES]
        self.gateway = Gateway(self.world, self.network)
        self.watchdog = Watchdog(self.world)
        self.api = Api(self.world, max_hold_fen=self.world.rng.choice((5_00, 20_00, 60_00)))
        self.auditor = Auditor(self.world)
        for driver in self.api.drivers:  # every wallet starts with something
            self.api.wallet("api-1", driver, Ledger.top_up, key=f"first-{driver.driver_id}", amount=30_00,
                            provider="wechat", payment_ref=f"first-{driver.driver_id}")
        for pile in self.piles:
            pile.login()

    def pile(self, pile_no: str) -> Pile:
        return next(p for p in self.piles if p.pile_no == pile_no)

    def deliver(self, message: Message) -> None:
        if message.to == "gateway":
            self.gateway.receive(message)
        else:
            self.pile(message.to).receive(message)

    def sweep(self) -> None:
        self.watchdog.sweep()
        self.auditor.last_sweep = self.world.now

    def step(self, description: str, process: str, action: object) -> None:
        world = self.world
        world.log(f"{world.now:%H:%M:%S} {description}")
        try:
            action()  # type: ignore[operator]
        except Crash as crash:
            world.faults["crash"] += 1
            world.log(f"crash of {crash.args[0]} after commit {world.commits}")
            self.restart(str(crash.args[0]))
        world.interleave = None

    def restart(self, name: str) -> None:
        self.world.process(name).restart()
        if name == "gateway":  # every pile's connection was the dead process's
            for pile in self.piles:
                if pile.online:
                    pile.online = False
                    self.network.drop_connection(pile.pile_no, pile.conn)
            self.network.in_flight = [m for m in self.network.in_flight if m.kind != "closed"]
            self.gateway.reset()

    # ---- the drain -----------------------------------------------------------------------------------
    def drain_round(self) -> None:
        """No faults: piles back, drivers stop, every message delivered, a minute passes, a sweep."""
        world = self.world
        world.arm(None)
        for pile in self.piles:
            pile.vanished = False
            if not pile.online:
                self.step(f"login {pile.pile_no}", "", pile.login)
        for driver in self.api.drivers:
            for key in list(driver.top_ups):
                self.step(f"top_up again {key}", "api-1", lambda d=driver: self.api.top_up(d, "api-1", True))
            driver.starts.clear()  # the driver gives up on a start never answered
            self.step(f"refunds of {driver.driver_id}", "api-1", lambda d=driver: self.api.refund_result(d, "api-1"))
        for trade_no in list(world.store.open_sessions):  # the operator ends the run: every session stops
            self.step(f"stop {trade_no}", "api-1", lambda t=trade_no: self.stop(t))
        self.step("gateway follows", "gateway", self.gateway.follow)
        while self.network.in_flight:
            message = self.network.take(0)
            self.step(f"deliver {message}", "gateway", lambda m=message: self.deliver(m))
        for pile in self.piles:
            self.step(f"tick {pile.pile_no}", "", pile.tick)
        world.advance(DRAIN_MINUTE)
        self.step("watchdog sweeps", "watchdog", self.sweep)

    def stop(self, trade_no: str) -> None:
        try:
            self.world.ledger("api-1").request_stop(trade_no, "operator", "end of the run", self.world.now)
        except DomainError as error:
            self.world.log(f"stop {trade_no} refused: {error.code}")

    def quiescent(self) -> bool:
        store = self.world.store
        return not (self.network.in_flight or store.open_sessions or store.followups
                    or any(p.busy for p in self.piles)
                    or any(d.top_ups for d in self.api.drivers) or self.refunds_pending())

    def refunds_pending(self) -> bool:
        return any(self.auditor.wallet(d.wallet_id).refund_pending for d in self.api.drivers)


def run_seed(seed: int, steps: int = STEPS) -> Result:
    sim = Simulation(seed)
    world = sim.world
    result = Result(seed, faults=world.faults, trace=world.trace)
    number = 0
    try:
        sim.auditor.check()
        for number in range(1, steps + 1):
            world.advance(world.rng.randint(1, 20))
            sim.step(*choose(sim))
            sim.auditor.check()
        for _ in range(DRAIN_ROUNDS):
            number += 1
            sim.drain_round()
            sim.auditor.check()
            if sim.quiescent():
                break
        number += 1
        world.advance((FOLLOWUP_GRACE * 2).total_seconds())
        sim.step("watchdog sweeps at the end", "watchdog", sim.sweep)
        if not sim.quiescent():
            raise Violation("quiescence", f"not quiescent after {DRAIN_ROUNDS} drain rounds")
        sim.auditor.check_quiescent(sim.piles)
    except Violation as violation:
        result.failed_at, result.invariant, result.detail = number, violation.invariant, str(violation)
        world.log(f"FAILED at step {number}: {violation}")
    finally:
        sim.auditor.close()
    result.steps = number
    return result


# ---- the CLI ------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds to run (default 1000)")
    parser.add_argument("--from", dest="first", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--seed", type=int, default=None, help="run this one seed (replay a failure)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"steps per seed before the drain (default {STEPS})")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each seed's trace")


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1 or args.steps < 1:
        raise SystemExit("--seeds and --steps must be at least 1")
    seeds = [args.seed] if args.seed is not None else list(range(args.first, args.first + args.seeds))
    logger = logging.getLogger("chargeledger")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the watchdog's warnings are the simulation's normal
    try:
        return _run(seeds, args)
    finally:
        logger.setLevel(level)  # given back: run in-process (the tests), the caller's logs go on


def _run(seeds: list[int], args: argparse.Namespace) -> int:
    faults: Counter[str] = Counter()
    failures: list[Result] = []
    steps = 0
    started = time.perf_counter()
    for seed in seeds:
        result = run_seed(seed, args.steps)
        steps += result.steps
        faults.update(result.faults)
        if args.verbose:
            print(f"--- seed {seed} trace {result.trace_hash[:16]}")
            print("\n".join(result.trace))
        if not result.ok:
            failures.append(result)
            print(f"seed {seed} failed at step {result.failed_at}: {result.detail}")
            print(f"  replay: chargeledger simulate-faults --seed {seed} --steps {args.steps} -v")
    elapsed = time.perf_counter() - started
    print(f"{len(seeds)} schedules, {steps} steps in {elapsed:.1f} s ({len(seeds) / elapsed:.1f} seeds/s); "
          f"{len(failures)} failed")
    print("faults injected: " + ", ".join(f"{kind} {count}" for kind, count in sorted(faults.items())))
    return 1 if failures else 0
