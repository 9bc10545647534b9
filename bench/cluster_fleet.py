"""One shard's drivers and piles for bench/cluster.py's gateway part, in a process of their own.

Each pile is the scripted YKC pile of the end-to-end tests (``tests/ykc_pile.py``: it sends exactly
the frames below and nothing else) on real TCP to one of the gateways: pile ``i`` to gateway ``i mod
G``, the placement a round-robin balancer makes, without a proxy process in between taking its share
of the two cores. Each pile has its driver, whose sessions follow one another on gun 1:

1. the driver starts a session through the ledger (``Ledger.request_start``: the hold and the session
   in one commit), as the driver API does, without its readiness check (back to back on one gun, the
   next start would wait for the gateway's write-behind to record the gun idle, a wait no driver who
   unplugs and leaves ever sees);
2. the start reaches the pile the platform's way: the shard's relay publishes it, the gateway that
   holds the pile receives it through NATS, checks it against the shard's store and sends 0x34;
3. the pile charges at once: 0x33 accepted, ``readings`` realtime frames (0x13, charging: the first
   marks the session charging, each is a meter reading), the transaction record (0x3B), which the
   gateway settles and confirms (0x40) only once the settlement committed, then a 0x13 with the gun idle.

A session counts when its 0x40 arrives with result 0. Every pile first charges one session that is
not counted (the path warmed up, every gateway following NATS), then the process waits at the barrier
the other shard's process and the bench share, so the measured windows start together.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from psycopg.sql import SQL, Identifier

from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from pile_link.handlers.sessions import GUN_STATUS
from pile_link.ykc import Heartbeat, RemoteStart, RemoteStartReply, TransactionConfirm
from tests.ykc_pile import ScriptedPile

PRICES = {t: {"electricity": 100000, "service": 50000} for t in ("sharp", "peak", "flat", "valley")}
PRICE_PER_TIER = tuple(PRICES[t]["electricity"] + PRICES[t]["service"] for t in ("sharp", "peak", "flat", "valley"))
CHARGING, IDLE = GUN_STATUS.index("charging"), GUN_STATUS.index("idle")
HOLD = 50_00  # fen held at each start
STEP = 1000  # 0.1 kWh between two readings
WAIT = 120.0  # seconds a pile waits for a 0x34 or a 0x40 before the run is called failed
HEARTBEAT = 10.0  # seconds, as a YKC pile sends them (the gateway closes a link silent for 30 s)


def events_in(ledger: Ledger) -> int:
    """Every event the shard holds, counted in its Applications' events tables. Not the logs' highest
    notification ids: an insert rolled back takes its id too (a start whose first attempt lost a
    version race on the wallet to another process's capture is one, and its session's id another)."""
    total = 0
    for app in ledger.applications:
        recorder = app.recorder
        table = Identifier(recorder.datastore.schema, recorder.events_table_name)
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(SQL("SELECT count(*) AS n FROM {}").format(table))
            total += cursor.fetchone()["n"]
    return total


def pile_time() -> datetime:
    """The pile's wall clock: naive China time, as it writes times into its frames."""
    return datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None, microsecond=0)


Call = Callable[..., Awaitable[Any]]


async def charge(pile: ScriptedPile, wallet: UUID, count: int, readings: int, ledger: Ledger, call: Call) -> None:
    """``count`` sessions on the pile's gun 1, one after the other, each settled before the next starts."""
    for _ in range(count):
        trade_no = await call(ledger.request_start, pile_no=pile.pile_no, gun_no=1, wallet_id=wallet, hold_fen=HOLD,
                              at=datetime.now(timezone.utc), author=f"driver-{pile.pile_no}")
        start = await pile.expect(RemoteStart, WAIT)
        if start.trade_no != trade_no:
            raise RuntimeError(f"pile {pile.pile_no}: 0x34 for {start.trade_no}, expected {trade_no}")
        pile.send(RemoteStartReply(trade_no, pile.pile_no, "01", 1, 0))
        for n in range(1, readings + 1):
            pile.send(pile.realtime(1, status=CHARGING, trade_no=trade_no, energy=n * STEP))
        end = pile_time()
        pile.send(pile.record(trade_no, 1, (0, 0, readings * STEP, 0), PRICE_PER_TIER,
                              end - timedelta(minutes=readings), end))
        confirm = await pile.expect(TransactionConfirm, WAIT)
        if (confirm.trade_no, confirm.result) != (trade_no, 0):
            raise RuntimeError(f"pile {pile.pile_no}: record {trade_no} answered {confirm}")
        pile.send(pile.realtime(1, status=IDLE))


async def heartbeats(pile: ScriptedPile) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT)
        pile.send(Heartbeat(pile.pile_no, "01", 0))


async def drive(ledger: Ledger, piles: list[tuple[str, UUID]], ports: list[int], sessions: int, readings: int,
                barrier: Any) -> tuple[int, float]:
    """(events written, seconds) of ``sessions`` sessions over the piles, after the warm-up and the barrier."""
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=len(piles) + 2, thread_name_prefix="driver")

    def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))

    links = [ScriptedPile(pile_no, gun_count=1) for pile_no, _ in piles]
    beating: list[asyncio.Task[None]] = []
    try:
        for i, pile in enumerate(links):
            await pile.login(ports[i % len(ports)])
            pile.send(pile.realtime(1, status=IDLE))
            beating.append(asyncio.create_task(heartbeats(pile)))
        wallets = [wallet for _, wallet in piles]
        await asyncio.gather(*(charge(p, w, 1, readings, ledger, call) for p, w in zip(links, wallets)))
        share = [sessions // len(links) + (1 if i < sessions % len(links) else 0) for i in range(len(links))]
        await call(barrier.wait, 600)
        before = await call(events_in, ledger)
        started = time.perf_counter()
        await asyncio.gather(*(charge(p, w, n, readings, ledger, call) for p, w, n in zip(links, wallets, share)))
        elapsed = time.perf_counter() - started
        return await call(events_in, ledger) - before, elapsed
    finally:
        for task in beating:
            task.cancel()
        for pile in links:
            await pile.close()
        executor.shutdown(wait=True)


def fleet_worker(shard: str, url: str, piles: list[tuple[str, UUID]], ports: list[int], sessions: int,
                 readings: int, barrier: Any, out: Any) -> None:
    """The process of one shard's drivers and piles: ``(shard, sessions, events, seconds)`` on ``out``,
    or ``(shard, error)`` if a session failed."""
    ledger = Ledger(eventsourcing_env(url, pool_size=2, max_overflow=len(piles)))
    try:
        events, elapsed = asyncio.run(drive(ledger, piles, ports, sessions, readings, barrier))
        out.put((shard, sessions, events, elapsed))
    except BaseException as error:  # noqa: BLE001 - said to the bench, which stops the run
        barrier.abort()
        out.put((shard, f"{type(error).__name__}: {error}"))
    finally:
        ledger.close()
