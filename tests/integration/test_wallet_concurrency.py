"""Workers racing holds and captures on one wallet, each with its own connections, on Postgres."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict

from adapters.postgres.env import eventsourcing_env
from domain.errors import InsufficientFunds
from domain.ledger import Ledger
from domain.wallet import posting_sets_of

TOP_UP = 100_00
HOLD = 7_00
ATTEMPTS_PER_WORKER = 20


def test_racing_holds_and_captures_never_overdraw_nor_lose_an_update(ledger: Ledger, database_url: str) -> None:
    wallet_id = ledger.open_wallet(uuid.UUID(int=7), "racer", "test")
    ledger.top_up(wallet_id, key="t", amount=TOP_UP, provider="wechat", payment_ref="w")
    held: dict[str, list[str]] = defaultdict(list)
    refused: dict[str, int] = defaultdict(int)
    barrier = threading.Barrier(2, timeout=30)
    # each worker has its own Applications and connection pools: a separate process looks the same to Postgres
    workers = {name: Ledger(eventsourcing_env(database_url)) for name in ("a", "b")}

    def worker(name: str) -> None:
        own = workers[name]
        try:
            barrier.wait()
            for i in range(ATTEMPTS_PER_WORKER):
                hold_id = f"{name}-{i}"
                try:
                    own.hold(wallet_id, key=f"hold:{hold_id}", hold_id=hold_id, amount=HOLD)
                except InsufficientFunds:
                    refused[name] += 1
                    continue
                held[name].append(hold_id)
                own.capture(wallet_id, key=f"cap:{hold_id}", hold_id=hold_id,
                            electricity=3_00, service=1_00)
        finally:
            own.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    captures = len(held["a"]) + len(held["b"])
    wallet = ledger.wallet(wallet_id)
    # every accepted hold was captured at 4.00: the balance is exactly what the accepted commands say
    assert wallet.available == TOP_UP - captures * 4_00
    assert wallet.available >= 0 and wallet.held == 0
    assert captures + refused["a"] + refused["b"] == 2 * ATTEMPTS_PER_WORKER
    # 40 sessions at 4.00 each cannot all fit in 100.00: some holds must have been refused
    assert refused["a"] + refused["b"] > 0
    totals: dict[str, int] = defaultdict(int)
    for event in ledger.wallets.events.get(wallet_id):
        for postings in posting_sets_of(event):
            for account, amount in postings:
                totals[account] += amount
    assert sum(totals.values()) == 0
    assert totals["revenue:electricity"] == -captures * 3_00 and totals["revenue:service"] == -captures * 1_00
