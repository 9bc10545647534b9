"""Composition root and CLI: ``chargeledger <command>``.

Reads settings from the environment (``DATABASE_URL``, ``NATS_URL``, ``CHARGELEDGER_VAR``), starts
the project's own Postgres and NATS under ./var when those URLs are unset, and wires the pieces.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adapters.postgres import eventsourcing_env
from adapters.relay import Relay
from adapters.servers import create_database, resolve_servers
from domain.ledger import Ledger

log = logging.getLogger("chargeledger")


def var_dir() -> Path:
    path = Path(os.environ.get("CHARGELEDGER_VAR", "var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def servers() -> Iterator[tuple[str, str]]:
    """(database server URL, NATS URL), starting the embedded ones for whichever is not configured."""
    database_url, nats_url, started = resolve_servers(var_dir())
    try:
        yield database_url, nats_url
    finally:
        for server in reversed(started):
            server.stop()


def iter_events(app: Any, batch: int = 1000) -> Iterator[Any]:
    """Every domain event of an Application, in notification order."""
    start = None
    while True:
        notifications = app.recorder.select_notifications(start, batch, inclusive_of_start=False)
        if not notifications:
            return
        for n in notifications:
            yield app.mapper.to_domain_event(n)
        start = notifications[-1].id


@contextmanager
def running_relay(ledger: Ledger, database_url: str, nats_url: str) -> Iterator[Relay]:
    relay = Relay(ledger.applications, eventsourcing_env(database_url), nats_url)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(relay.run(),), name="relay", daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        loop.call_soon_threadsafe(relay.stop)
        thread.join(timeout=10)


DEMO_PRICES = {  # yuan/kWh × 10^5: sharp 1.20 + 0.80, peak 1.00 + 0.80, flat 0.70 + 0.60, valley 0.35 + 0.40
    "sharp": {"electricity": 120000, "service": 80000},
    "peak": {"electricity": 100000, "service": 80000},
    "flat": {"electricity": 70000, "service": 60000},
    "valley": {"electricity": 35000, "service": 40000},
}
DEMO_SLOTS = [3] * 16 + [2] * 4 + [1] * 6 + [0] * 4 + [2] * 6 + [1] * 8 + [2] * 2 + [3] * 2


def run_demo(ledger: Ledger, relay: Relay, out: Any = print) -> bool:
    """A scripted day on the ledger: five sessions that show each path money can take."""
    from datetime import datetime, timedelta, timezone

    from domain.books import books_of
    from domain.money import energy_to_kwh_str as kwh
    from domain.money import fen_to_yuan_str as yuan
    from domain.session import TransactionRecord
    from domain.tariff import TIERS
    from zoneinfo import ZoneInfo

    day = datetime.now(timezone.utc).replace(hour=1, minute=0, second=0, microsecond=0)  # 09:00 in Shanghai
    tenant = ledger.create_tenant("Demo Charging Co.", "platform-admin")
    station = ledger.create_station(tenant, "Zhangjiang Hub", "88 Keyuan Rd, Pudong, Shanghai", 31.2036, 121.5907,
                                    "ops@demo")
    piles = ["32010600019236", "32010600019237"]
    for pile_no in piles:
        ledger.register_pile(station, pile_no, "DC", 2, "ops@demo")
    tariff = ledger.create_tariff(tenant, "Shanghai TOU 2026", DEMO_PRICES, DEMO_SLOTS, "ops@demo")
    ledger.assign_tariff(tariff, "ops@demo", station_id=station)
    out(f"tenant, station 'Zhangjiang Hub', piles {', '.join(piles)}, tariff v1 assigned")
    wallets = {}
    for driver, amount, provider in (("driver-li", 200_00, "wechat"), ("driver-wang", 30_00, "alipay"),
                                     ("driver-zhao", 100_00, "wechat")):
        wallets[driver] = ledger.open_wallet(tenant, driver, driver)
        ledger.wallet_command(wallets[driver], "top_up", key=f"topup:{driver}", amount=amount, provider=provider,
                              payment_ref=f"{provider}-{driver}")
        out(f"{driver:12} topped up {yuan(amount):>7} yuan via {provider}")

    def record(tier_energy: tuple[int, int, int, int], start: datetime, minutes: int) -> TransactionRecord:
        amounts = tuple(e * (DEMO_PRICES[t]["electricity"] + DEMO_PRICES[t]["service"]) // 10**5
                        for e, t in zip(tier_energy, TIERS))
        return TransactionRecord(tier_energy=tier_energy, pile_tier_amounts=amounts,  # type: ignore[arg-type]
                                 pile_total_amount=sum(amounts), pile_total_energy=sum(tier_energy),
                                 meter_start=5_000_000, meter_end=5_000_000 + sum(tier_energy), started_at=start,
                                 ended_at=start + timedelta(minutes=minutes), stop_reason=0x40)

    def charge(driver: str, pile_no: str, gun: int, start: datetime, hold: int, kwh_per_min: int,
               minutes: int) -> str:
        trade_no = ledger.request_start(pile_no=pile_no, gun_no=gun, wallet_id=wallets[driver], hold_fen=hold,
                                        at=start, author=driver)
        out(f"{trade_no}  {driver:12} start requested, hold {yuan(hold)} yuan")
        ledger.session_command(trade_no, "acknowledge_start", at=start + timedelta(seconds=3), ok=True)
        ledger.session_command(trade_no, "mark_charging", at=start + timedelta(seconds=20))
        for minute in range(1, minutes + 1):
            ledger.session_command(trade_no, "record_reading", at=start + timedelta(minutes=minute),
                                   energy=minute * kwh_per_min)
        return trade_no

    def show(trade_no: str) -> None:
        s = ledger.session(trade_no)
        bill = s.bill or {}
        out(f"{trade_no}  {s.state:9} {kwh(bill.get('energy', 0))} kWh  electricity {yuan(bill.get('electricity_fen', 0))}"
            f" + service {yuan(bill.get('service_fen', 0))} = {yuan(bill.get('total_fen', 0))} yuan"
            + (f"  pile differs by {s.pile_difference} × 0.0001 yuan" if s.pile_difference else "")
            + (f"  ({s.reason})" if s.reason else ""))

    # 1. an ordinary app session across the flat -> peak edge at 10:00
    t = day + timedelta(minutes=40)
    a = charge("driver-li", piles[0], 1, t, 80_00, 1200, 40)
    ledger.session_command(a, "request_stop", at=t + timedelta(minutes=41), reason="driver stopped", author="driver-li")
    s = ledger.session(a)
    ledger.settle(a, record(tuple(s.tier_energy), t, 41), t + timedelta(minutes=42))  # type: ignore[arg-type]
    show(a)
    # 2. a bill above the hold: the hold is captured and the rest charged from the balance
    t = day + timedelta(hours=2)
    b = charge("driver-wang", piles[0], 2, t, 10_00, 1500, 5)
    ledger.settle(b, record((0, 90000, 0, 0), t, 60), t + timedelta(minutes=61))
    show(b)
    # 3. a pile that never answers the start: the 90 s deadline fails it and releases the hold
    t = day + timedelta(hours=3)
    c = ledger.request_start(pile_no=piles[1], gun_no=1, wallet_id=wallets["driver-zhao"], hold_fen=50_00, at=t,
                             author="driver-zhao")
    out(f"{c}  driver-zhao  start requested, hold 50.00 yuan; the pile stays silent")
    ledger.session_command(c, "expire", now=t + timedelta(seconds=91))
    show(c)
    # 4. an offline start the pile reports only afterwards
    t = day + timedelta(hours=4)
    d = f"{piles[1]}02{t.astimezone(ZoneInfo('Asia/Shanghai')):%y%m%d%H%M%S}0001"
    ledger.settle(d, record((20000, 0, 0, 0), t, 30), t + timedelta(minutes=31), wallet_id=wallets["driver-zhao"])
    show(d)
    # 5. a stuck session force-closed by the operator, re-priced when the pile's record turns up
    t = day + timedelta(hours=5)
    e = charge("driver-li", piles[1], 2, t, 60_00, 1000, 10)
    ledger.session_command(e, "force_close", at=t + timedelta(hours=2), reason="pile lost power", author="ops@demo")
    show(e)
    ledger.settle(e, record((12000, 0, 0, 0), t, 12), t + timedelta(hours=3))
    show(e)
    # a refund of what is left, through the provider it came from
    left = ledger.wallet(wallets["driver-zhao"]).available
    ledger.wallet_command(wallets["driver-zhao"], "request_refund", key="refund:zhao", refund_id="rf-zhao-1",
                          amount=left, provider="wechat")
    ledger.wallet_command(wallets["driver-zhao"], "complete_refund", key="refund-done:zhao", refund_id="rf-zhao-1",
                          provider_ref="wx-refund-1")
    out(f"driver-zhao  refunded {yuan(left)} yuan to WeChat Pay")

    out("\nwallets                 available     held  arrears")
    for driver, wallet_id in wallets.items():
        w = ledger.wallet(wallet_id)
        out(f"  {driver:20} {yuan(w.available):>10} {yuan(w.held):>8} {yuan(w.arrears):>8}")
    books = books_of(iter_events(ledger.wallets))
    out("\ntrial balance (debit +, credit -, fen)")
    for account, amount in sorted(books.accounts.items()):
        out(f"  {account:24} {amount:>10}")
    out(f"  {'total':24} {books.trial_balance:>10}   over {books.posting_sets} posting sets")
    live = {k: 0 for k in ("available", "held", "arrears")}
    for wallet_id in wallets.values():
        w = ledger.wallet(wallet_id)
        live["available"] -= w.available
        live["held"] -= w.held
        live["arrears"] += w.arrears
    wallets_agree = all(books.accounts.get(k, 0) == v for k, v in live.items())
    import time

    deadline = time.monotonic() + 30
    while not relay.caught_up() and time.monotonic() < deadline:
        time.sleep(0.1)
    out(f"\nrelay: {relay.published} events published to NATS JetStream stream CHARGELEDGER"
        f" ({'caught up' if relay.caught_up() else 'still behind'})")
    ok = books.balanced and wallets_agree
    out("books balance" if ok else "BOOKS DO NOT BALANCE")
    return ok


def cmd_demo(args: argparse.Namespace) -> int:
    with servers() as (server_url, nats_url):
        database_url = server_url if os.environ.get("DATABASE_URL") else create_database(server_url, "demo")
        ledger = Ledger(eventsourcing_env(database_url))
        try:
            with running_relay(ledger, database_url, nats_url) as relay:
                print(f"Postgres: {database_url}\nNATS:     {nats_url}\n")
                ok = run_demo(ledger, relay)
                if not args.once and sys.stdin.isatty():
                    print("\nServers stay up for a look (psql / nats); press Ctrl-C to stop.")
                    try:
                        threading.Event().wait()
                    except KeyboardInterrupt:
                        pass
        finally:
            ledger.close()
    return 0 if ok else 1


def cmd_servers(args: argparse.Namespace) -> int:
    with servers() as (database_url, nats_url):
        print(f"DATABASE_URL={database_url}\nNATS_URL={nats_url}\n(Ctrl-C stops them)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    with servers() as (database_url, nats_url):
        ledger = Ledger(eventsourcing_env(database_url))
        relay = Relay(ledger.applications, eventsourcing_env(database_url), nats_url)
        try:
            asyncio.run(relay.run())
        except KeyboardInterrupt:
            pass
        finally:
            ledger.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="chargeledger", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="scripted sessions on the ledger; prints what happened and the books")
    demo.add_argument("--once", action="store_true", help="run once and exit 0 only if the books balance")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("servers", help="start the embedded Postgres and NATS and print their URLs").set_defaults(
        func=cmd_servers)
    sub.add_parser("relay", help="publish every ledger event to NATS JetStream").set_defaults(func=cmd_relay)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
