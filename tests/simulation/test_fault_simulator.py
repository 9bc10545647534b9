"""The deterministic fault simulator (simulation/, docs/fault-simulator.md): 2,000 seeds hold every
invariant; each fault kind really occurs; a seed replays exactly; and a deliberately broken policy is
caught by some seed, and the failing seed replays to the same failure."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import domain.settlement
import domain.use_cases.core
from app import main
from domain.wallet import Wallet
from simulation.runner import Result, run_seed

SEEDS = 2000
STEPS = 30  # steps per seed before the drain: 2,000 seeds take about a minute on the test machine
FAULTS = ("crash", "lost_message", "repeated_message", "late_record", "clock_jump", "concurrent_wallet",
          "pile_vanished", "owed_stop_sent_again", "followup_applied")


@pytest.fixture(autouse=True)
def quiet() -> Iterator[None]:
    """The watchdog warns of every deadline it applies: in the simulation that is the normal course."""
    logger = logging.getLogger("chargeledger")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@pytest.fixture(scope="module")
def many() -> Iterator[dict[str, Any]]:
    logger = logging.getLogger("chargeledger")
    level = logger.level  # given back after the module: later tests read the chargeledger logs
    logger.setLevel(logging.ERROR)
    faults: Counter[str] = Counter()
    failures: list[Result] = []
    steps = 0
    started = time.perf_counter()
    for seed in range(SEEDS):
        result = run_seed(seed, STEPS)
        faults.update(result.faults)
        steps += result.steps
        if not result.ok:
            failures.append(result)
    elapsed = time.perf_counter() - started
    print(f"\nfault simulator: {SEEDS} seeds, {steps} steps in {elapsed:.1f} s ({SEEDS / elapsed:.1f} seeds/s); "
          f"faults {dict(sorted(faults.items()))}")
    yield {"faults": faults, "failures": failures}
    logger.setLevel(level)


def test_every_seed_holds_every_invariant(many: dict[str, Any]) -> None:
    failures = many["failures"]
    assert not failures, "\n".join(f"seed {r.seed} failed at step {r.failed_at}: {r.detail}" for r in failures[:5])


@pytest.mark.parametrize("kind", FAULTS)
def test_each_fault_kind_occurs(many: dict[str, Any], kind: str) -> None:
    assert many["faults"][kind] > 0, f"no {kind} in {SEEDS} seeds"


def test_a_seed_replays_exactly() -> None:
    first, again, other = run_seed(7, 40), run_seed(7, 40), run_seed(8, 40)
    assert first.trace == again.trace
    assert first.trace_hash == again.trace_hash
    assert first.faults == again.faults
    assert first.trace_hash != other.trace_hash


def first_failure(seeds: range, steps: int = STEPS) -> Result:
    for seed in seeds:
        result = run_seed(seed, steps)
        if not result.ok:
            return result
    raise AssertionError(f"no seed in {seeds} caught the broken policy")


def test_a_wallet_that_skips_a_release_is_caught_and_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Wallet.release

    def release_skipping_some(self: Wallet, key: str, hold_id: str) -> None:
        if int(hold_id[-1]) % 3 == 0:  # a third of the releases never happen
            return
        real(self, key, hold_id)

    monkeypatch.setattr(Wallet, "release", release_skipping_some)
    failed = first_failure(range(200))
    assert failed.invariant in ("a closed session's hold is released", "every hold closed")
    again = run_seed(failed.seed, STEPS)
    assert (again.failed_at, again.invariant, again.trace_hash) == (failed.failed_at, failed.invariant,
                                                                    failed.trace_hash)


def test_a_settlement_that_captures_twice_is_caught_and_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    real = domain.settlement.wallet_commands

    def twice(session: Any, event_name: str, event: Any) -> list[Any]:
        commands = real(session, event_name, event)
        if event_name == "Settled" and event.bill["total_fen"]:
            bill = event.bill
            commands.append(("charge", {"key": f"again:{session.trade_no}", "electricity": bill["electricity_fen"],
                                        "service": bill["service_fen"], "reference": session.trade_no}))
        return commands

    monkeypatch.setattr(domain.use_cases.core, "wallet_commands", twice)
    failed = first_failure(range(200))
    assert failed.invariant == "paid what the piles recorded"
    assert run_seed(failed.seed, STEPS).trace_hash == failed.trace_hash


def test_cli_prints_the_failing_seed_and_the_command_that_replays_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Wallet.release
    monkeypatch.setattr(Wallet, "release", lambda self, key, hold_id: None if hold_id.endswith("0") else
                        real(self, key, hold_id))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["simulate-faults", "--seeds", "40", "--steps", str(STEPS)])
    text = out.getvalue()
    assert code == 1
    failed = re.search(r"seed (\d+) failed at step (\d+): (.+)", text)
    assert failed, text
    assert re.search(r"\d+ schedules, \d+ steps in .* seeds/s\); \d+ failed", text)
    assert "faults injected: " in text and "crash " in text
    replay = re.search(r"replay: chargeledger (simulate-faults --seed \d+ --steps \d+ -v)", text)
    assert replay, text
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(replay.group(1).split()) == 1
    assert f"seed {failed.group(1)} failed at step {failed.group(2)}: {failed.group(3)}" in out.getvalue()


def test_cli_runs_clean_seeds() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["simulate-faults", "--seeds", "5", "--from", "100", "--steps", "20"]) == 0
    assert "5 schedules" in out.getvalue() and "0 failed" in out.getvalue()
