"""``chargeledger demo``: a scripted day on the ledger, then a live fleet of simulated piles charging
through the YKC gateway; prints what happened, the books, the relay's, the projections' and the
auditor's view of it, and exits 0 only if the books balance.

With ``--serve`` (the default at a terminal, so ``make demo``) it then stays live until Ctrl-C or
SIGTERM: the console, the 经营大屏 and the driver H5 pages over a charging fleet
(``adapters/cli/demo_serve.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from typing import Any

from adapters.cli.relay import running_relay
from adapters.cli.servers import servers, var_dir
from adapters.followers.log_follower import iter_events
from adapters.followers.relay.publisher import Relay
from adapters.postgres.env import eventsourcing_env
from adapters.servers.postgres_server import create_database
from adapters.servers.resolve import redacted
from adapters.servers.nats_users import ADMIN, GATEWAY, RELAY
from domain.ledger import Ledger

DEMO_PRICES = {  # yuan/kWh × 10^5: sharp 1.20 + 0.80, peak 1.00 + 0.80, flat 0.70 + 0.60, valley 0.35 + 0.40
    "sharp": {"electricity": 120000, "service": 80000},
    "peak": {"electricity": 100000, "service": 80000},
    "flat": {"electricity": 70000, "service": 60000},
    "valley": {"electricity": 35000, "service": 40000},
}
LIVE_PILES = ("32010600019240", "32010600019241", "32010600019242")  # the live fleet's, after the scripted day
DEMO_SLOTS = [3] * 16 + [2] * 4 + [1] * 6 + [0] * 4 + [2] * 6 + [1] * 8 + [2] * 2 + [3] * 2


def run_demo(ledger: Ledger, relay: Relay, out: Any = print, database_url: str | None = None,
             nats_url: str | None = None, keep: dict[str, Any] | None = None) -> bool:
    """A scripted day on the ledger (five sessions that show each path money can take), then, given
    the servers, the live part: the YKC gateway and a simulated fleet charging over TCP. ``keep`` is
    given the tenant, station, tariff and live piles (what ``--serve`` keeps running)."""
    from datetime import datetime, timedelta

    from domain.books import books_of
    from domain.money import energy_to_kwh_str as kwh
    from domain.money import fen_to_yuan_str as yuan
    from domain.clock import utcnow
    from domain.session import SettlementRecord
    from domain.tariff import TIERS
    from zoneinfo import ZoneInfo

    day = utcnow().replace(hour=1, minute=0, second=0, microsecond=0)  # 09:00 in Shanghai
    tenant = ledger.create_tenant("Demo Charging Co.", "platform-admin")
    station = ledger.create_station(tenant, "Zhangjiang Hub", "88 Keyuan Rd, Pudong, Shanghai", 31.2036, 121.5907,
                                    "ops@demo")
    piles = ["32010600019236", "32010600019237"]
    for pile_no in piles:
        ledger.register_pile(station, pile_no, "DC", 2, "ops@demo")
    tariff = ledger.create_tariff(tenant, "Shanghai TOU 2026", DEMO_PRICES, DEMO_SLOTS, "ops@demo")
    ledger.assign_tariff(tariff, "ops@demo", station_id=station)
    if keep is not None:
        keep.update(tenant=tenant, station=station, tariff=tariff, piles=list(piles))
    out(f"tenant, station 'Zhangjiang Hub', piles {', '.join(piles)}, tariff v1 assigned")
    wallets = {}
    # cash at the station's counter: a WeChat Pay or Alipay top-up needs its platform's signed
    # notification, which the auditor checks; the live part (--serve) has a fake WeChat Pay for the
    # H5 page's top-ups (simulation/payment_platforms.py), the scripted day keeps to cash
    for driver, amount in (("driver-li", 200_00), ("driver-wang", 30_00), ("driver-zhao", 100_00)):
        wallets[driver] = ledger.open_wallet(tenant, driver, driver)
        ledger.top_up(wallets[driver], key=f"topup:{driver}", amount=amount, provider="cash",
                              payment_ref=f"counter-receipt-{driver}")
        out(f"{driver:12} topped up {yuan(amount):>7} yuan in cash at the counter")

    def record(tier_energy: tuple[int, int, int, int], start: datetime, minutes: int) -> SettlementRecord:
        amounts = tuple(e * (DEMO_PRICES[t]["electricity"] + DEMO_PRICES[t]["service"]) // 10**5
                        for e, t in zip(tier_energy, TIERS))
        return SettlementRecord(tier_energy=tier_energy, pile_tier_amounts=amounts,  # type: ignore[arg-type]
                                 pile_total_amount=sum(amounts), pile_total_energy=sum(tier_energy),
                                 meter_start=5_000_000, meter_end=5_000_000 + sum(tier_energy), started_at=start,
                                 ended_at=start + timedelta(minutes=minutes), stop_reason=0x40)

    def charge(driver: str, pile_no: str, gun: int, start: datetime, hold: int, kwh_per_min: int,
               minutes: int) -> str:
        trade_no = ledger.request_start(pile_no=pile_no, gun_no=gun, wallet_id=wallets[driver], hold_fen=hold,
                                        at=start, author=driver)
        out(f"{trade_no}  {driver:12} start requested, hold {yuan(hold)} yuan")
        ledger.acknowledge_start(trade_no, at=start + timedelta(seconds=3), ok=True)
        ledger.mark_charging(trade_no, at=start + timedelta(seconds=20))
        for minute in range(1, minutes + 1):
            ledger.record_reading(trade_no, at=start + timedelta(minutes=minute),
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
    ledger.request_stop(a, at=t + timedelta(minutes=41), reason="driver stopped", author="driver-li")
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
    ledger.expire_session(c, now=t + timedelta(seconds=91))
    show(c)
    # 4. an offline start the pile reports only afterwards
    t = day + timedelta(hours=4)
    d = f"{piles[1]}02{t.astimezone(ZoneInfo('Asia/Shanghai')):%y%m%d%H%M%S}0001"
    ledger.settle(d, record((20000, 0, 0, 0), t, 30), t + timedelta(minutes=31), wallet_id=wallets["driver-zhao"])
    show(d)
    # 5. a stuck session force-closed by the operator, re-priced when the pile's record turns up
    t = day + timedelta(hours=5)
    e = charge("driver-li", piles[1], 2, t, 60_00, 1000, 10)
    ledger.force_close(e, at=t + timedelta(hours=2), reason="pile lost power", author="ops@demo")
    show(e)
    ledger.settle(e, record((12000, 0, 0, 0), t, 12), t + timedelta(hours=3))
    show(e)
    live: list[str] = []
    if database_url and nats_url:
        live = asyncio.run(run_live_fleet(ledger, database_url, nats_url, tenant, station, wallets, out))
        if keep is not None:
            keep["piles"] += LIVE_PILES
        out("\nlive sessions, priced by the platform from the pile's per-tier energy:")
        for trade_no in live:
            show(trade_no)
    live_settled = all(ledger.session(t).state == "finished" for t in live)
    # a refund of what is left, through the provider it came from
    left = ledger.wallet(wallets["driver-zhao"]).available
    ledger.request_refund(wallets["driver-zhao"], key="refund:zhao", refund_id="rf-zhao-1",
                          amount=left, provider="cash")
    ledger.complete_refund(wallets["driver-zhao"], key="refund-done:zhao", refund_id="rf-zhao-1",
                          provider_ref="counter-refund-1")
    out(f"driver-zhao  refunded {yuan(left)} yuan in cash")

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
    deadline = time.monotonic() + 30
    while not relay.caught_up() and time.monotonic() < deadline:
        time.sleep(0.1)
    out(f"\nrelay: {relay.published} events published to NATS JetStream stream CHARGELEDGER"
        f" ({'caught up' if relay.caught_up() else 'still behind'})")
    audited = True
    if database_url:
        from adapters.audit.replay import replay
        from projections.runner import Projections

        projections = Projections(ledger.applications, eventsourcing_env(database_url))
        out(f"projections: {projections.catch_up()} events into the order, revenue, live-status and alarm views")
        report = replay(database_url)
        audited = report.ok
        out(f"auditor: replayed {report.counts['total_events']} events with the domain code alone: "
            f"{len(report.differences)} differences (wallets, bills, order and revenue views all agree)"
            if audited else "auditor: DIFFERENCES\n" + report.as_text())
    ok = books.balanced and wallets_agree and live_settled and audited
    if not live_settled:
        out("SOME LIVE SESSIONS DID NOT SETTLE")
    out("books balance" if ok else "BOOKS DO NOT BALANCE")
    return ok


async def run_live_fleet(ledger: Ledger, database_url: str, nats_url: str, tenant: Any, station: Any,
                         wallets: dict[str, Any], out: Any = print) -> list[str]:
    """The YKC gateway on TCP and a seeded fleet of simulated piles charging against the ledger.

    Drivers start from the app (0x34 reaches the pile through NATS), one driver's balance runs out
    (the platform stops the pile), one pile loses its link mid-charge and uploads its record after
    logging in again, one driver starts with a card at the pile. Returns the trade serials.
    """
    from domain.clock import utcnow
    from pile_link.gateway import Gateway
    from pile_link.simulator import Fleet, PileSpec
    from pile_link.simulator.console import Console
    piles = list(LIVE_PILES)
    for pile_no in piles:
        ledger.register_pile(station, pile_no, "DC", 2, "ops@demo")
    ledger.bind_credential(wallets["driver-zhao"], "card", "00000000C0FFEE01", "driver-zhao")
    # The piles run 120x faster than real time: the platform's ~0.2 s to act on a reading is 24 s of
    # charging, so the balance margin is wider than a real deployment's (docs/protocols/ykc.md).
    gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, port=0, sweep_interval=1.0,
                      balance_margin_fen=400)
    await gateway.start()
    out(f"\nYKC gateway listening on 127.0.0.1:{gateway.port}; simulated piles {', '.join(piles)} "
        "(seed 7, charging at x120 speed)\n")
    fleet = Fleet("127.0.0.1", gateway.port, [PileSpec(no, guns=2, plugged=True, max_power_w=60_000) for no in piles],
                  seed=7, speed=120)
    fleet.events.subscribe(Console(sys.stdout, progress=600))
    trades: list[str] = []
    now = utcnow
    try:
        await fleet.start()
        ready = asyncio.get_running_loop().time() + 30  # a pile charges only with the platform's billing model
        while any(fleet.pile(p).model is None for p in piles) and asyncio.get_running_loop().time() < ready:
            await asyncio.sleep(0.05)
        for (driver, hold), (pile_no, gun) in zip((("driver-li", 80_00), ("driver-wang", 10_00), ("driver-li", 60_00)),
                                                  ((piles[0], 1), (piles[1], 1), (piles[2], 1))):
            trade_no = await gateway.run(ledger.request_start, pile_no=pile_no, gun_no=gun,
                                         wallet_id=wallets[driver], hold_fen=hold, at=now(), author=driver)
            out(f"app: {driver} starts {pile_no} gun {gun} holding {hold / 100:.2f} yuan -> {trade_no}")
            trades.append(trade_no)
        card = await fleet.pile(piles[2]).swipe_card(2, "00000000C0FFEE01")
        if card.data.get("trade_no"):
            trades.append(card["trade_no"])
        await asyncio.sleep(6)
        out(f"link: {piles[0]} loses its 4G link mid-charge; its driver stops at the pile while it is offline")
        await fleet.pile(piles[0]).disconnect()
        await asyncio.sleep(2)
        fleet.pile(piles[0]).press_stop(1)  # the record stays buffered in the pile
        await asyncio.sleep(2)
        await fleet.pile(piles[0]).reconnect()
        out(f"link: {piles[0]} is back and uploads the buffered record")
        await asyncio.sleep(4)
        for trade_no in trades:
            if ledger.session(trade_no).state == "charging":
                await gateway.run(ledger.request_stop, trade_no, "driver", "driver stopped", now())
        deadline = asyncio.get_running_loop().time() + 60
        while any(ledger.session(t).is_open for t in trades) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
    finally:
        await fleet.close()
        await gateway.stop()
    return trades


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="run once and exit 0 only if the books balance")
    mode.add_argument("--serve", action="store_true",
                      help="after the scripted day, keep the gateway with a charging fleet, the views and the API with "
                           "the console up until Ctrl-C or SIGTERM (the default at a terminal)")


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo as Ctrl-C does: what it started stops with it


def run(args: argparse.Namespace) -> int:
    serve = args.serve or (not args.once and sys.stdin.isatty())
    signal.signal(signal.SIGTERM, interrupted)
    with servers(RELAY, GATEWAY, ADMIN) as (server_url, relay_url, gateway_url, nats_url):
        database_url = server_url if os.environ.get("DATABASE_URL") else create_database(server_url, "demo")
        ledger = Ledger(eventsourcing_env(database_url))
        try:
            with running_relay(ledger, database_url, relay_url) as relay:
                print(f"Postgres: {database_url}\nNATS:     {redacted(nats_url)}\n")
                day: dict[str, Any] = {}
                ok = run_demo(ledger, relay, database_url=database_url, nats_url=gateway_url, keep=day)
                if serve:
                    from adapters.cli.demo_serve import serve as serve_live

                    print(f"\nthe ledger: psql \"{database_url}\"; `chargeledger audit replay` with that DATABASE_URL")
                    serve_live(ledger, day, database_url, gateway_url, out=lambda text: print(text, flush=True))
                else:
                    print(f"""
where to look (with DATABASE_URL={database_url} set, while the servers run; `chargeledger servers`
prints each role's NATS_URL, with its credentials, from {var_dir() / "nats" / "credentials.json"}):
  psql "$DATABASE_URL"                      tables sessions_events, wallets_events, orders, revenue_daily, alarms
  chargeledger audit replay                 the auditor's replay of every event; audit seal / verify
  chargeledger demo --serve                 the same day, then the console, the 经营大屏 and the driver H5 pages
                                            live on a charging fleet (what `make demo` shows at a terminal)
  chargeledger gateway / simulate           the YKC gateway on TCP 8767 and simulated piles against it
  docs/architecture.md, docs/performance.md how it fits together, and what it measured""")
        finally:
            ledger.close()
    return 0 if ok else 1
