"""``chargeledger simulate``: point simulated YKC piles at a deployment and watch what happens.

Two modes:

* the default runs N piles × M guns that behave like real ones (login, model, heartbeats,
  realtime, remote start/stop, records, optional drivers arriving with cars and cards) and prints
  one line per notable event;
* ``--load`` opens N bare connections that only log in and send heartbeats and realtime frames
  at a set rate, and prints reply-latency percentiles at the end.

Examples::

    chargeledger simulate --host 10.0.0.5 --port 8768 --piles 20 --guns 2 --seed 7 --speed 60 --plugged
    chargeledger simulate --port 8768 --piles 5 --arrivals 20 --cards 00000000D14B0A54 --card-share 0.5
    chargeledger simulate --port 8768 --load --piles 10000 --duration 60
    chargeledger simulate --port 8768 --piles 6 --guns 2 --plugged --speed 120 --drain --drain-timeout 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from datetime import datetime
from typing import TextIO

from pile_link.simulator.console import Console
from pile_link.simulator.drivers import DriverConfig, Drivers
from pile_link.simulator.fleet import Fleet, generate_specs
from pile_link.simulator.load import LoadConfig, LoadFleet
from pile_link.simulator.pile import PileConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where")
    where.add_argument("--host", default="127.0.0.1", help="the YKC gateway's address (default %(default)s)")
    where.add_argument("--port", type=int, required=True, help="the YKC gateway's TCP port")
    what = parser.add_argument_group("the fleet")
    what.add_argument("--piles", type=int, default=1, help="number of piles, or connections with --load")
    what.add_argument("--guns", type=int, default=1, help="guns per pile (default %(default)s)")
    what.add_argument("--first-pile", default="99000000000001",
                      help="14-digit number of the first pile; the others follow (default %(default)s)")
    what.add_argument("--quirky", type=float, default=0.0, metavar="FRACTION",
                      help="share of piles sending the CRC high byte first (seeded; default 0)")
    what.add_argument("--seed", type=int, default=0, help="run seed: the same seed and speed replay a run")
    what.add_argument("--duration", type=float, default=0.0, metavar="SECONDS",
                      help="real seconds to run (default: until Ctrl-C; with --load: 60)")
    sim = parser.add_argument_group("simulated piles (default mode)")
    sim.add_argument("--speed", type=float, default=1.0,
                     help="simulated seconds per real second: 60 runs an hour's charge in a minute")
    sim.add_argument("--start", type=datetime.fromisoformat, metavar="YYYY-MM-DDTHH:MM",
                     help="the simulated clock's start, pile local time (default: now in China)")
    sim.add_argument("--plugged", action="store_true", help="every gun starts plugged in (ready for 0x34)")
    sim.add_argument("--max-power", type=float, metavar="KW", help="pile power (default: drawn per pile)")
    sim.add_argument("--arrivals", type=float, metavar="MINUTES",
                     help="drivers arrive at each gun every MINUTES on average (simulated); default: none")
    sim.add_argument("--patience", type=float, default=10.0, metavar="MINUTES",
                     help="a driver leaves if the charge has not started after this (default %(default)s)")
    sim.add_argument("--cards", default="", metavar="HEX,...", help="physical card numbers (8-byte hex) drivers swipe")
    sim.add_argument("--card-share", type=float, default=0.0, metavar="FRACTION",
                     help="share of drivers who swipe a card rather than start from the app")
    sim.add_argument("--heartbeat", type=float, default=10.0, metavar="SECONDS",
                     help="real seconds between heartbeats per gun (default %(default)s)")
    sim.add_argument("--record-retry", type=float, default=30.0, metavar="SECONDS",
                     help="real seconds between resends of an unconfirmed record (default %(default)s)")
    sim.add_argument("--progress", type=float, default=5.0, metavar="MINUTES",
                     help="print a charging gun's power and SOC every MINUTES simulated (default %(default)s)")
    sim.add_argument("--drain", action="store_true",
                     help="end the run (after --duration, or on SIGTERM / Ctrl-C) by draining: no new arrivals or "
                          "starts, every charge stopped at the pile, then wait until every record is confirmed; "
                          "exit 0 only if all were (a second Ctrl-C / SIGTERM abandons the drain)")
    sim.add_argument("--drain-timeout", type=float, default=120.0, metavar="SECONDS",
                     help="with --drain: real seconds to wait for the records (default %(default)s)")
    sim.add_argument("--verbose", action="store_true", help="print every event, idle realtime frames too")
    sim.add_argument("--events", type=argparse.FileType("w"), metavar="FILE",
                     help="also write every event as one JSON object per line to FILE")
    load = parser.add_argument_group("load mode")
    load.add_argument("--load", action="store_true", help="bare connections: login + heartbeats + realtime only")
    load.add_argument("--realtime", type=float, default=15.0, metavar="SECONDS",
                      help="with --load: real seconds between realtime frames per gun; 0 for none")
    load.add_argument("--connect-rate", type=float, default=500.0, metavar="PER_SECOND",
                      help="with --load: new connections per second (default %(default)s)")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the simulator as the CLI asked; 0 if every pile logged in and every record was confirmed."""
    out = out or sys.stdout
    if getattr(args, "drain_timeout", 0) < 0:
        out.write("simulate: --drain-timeout must be 0 or more seconds\n")
        return 2
    try:
        if args.load:
            return asyncio.run(_load(args, out))
        return asyncio.run(_simulate(args, out))
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:
        out.write(f"simulate: {exc}\n")
        return 2


async def _simulate(args: argparse.Namespace, out: TextIO) -> int:
    specs = generate_specs(args.piles, guns=args.guns, seed=args.seed, first_pile=args.first_pile,
                           quirky=args.quirky, plugged=args.plugged,
                           max_power_w=round(args.max_power * 1000) if args.max_power else None)
    config = PileConfig(heartbeat_interval=args.heartbeat, record_retry=args.record_retry)
    fleet = Fleet(args.host, args.port, specs, seed=args.seed, speed=args.speed, start=args.start, config=config)
    fleet.events.subscribe(Console(out, progress=args.progress * 60, verbose=args.verbose, jsonl=args.events))
    cards = tuple(bytes.fromhex(c.strip()).rjust(8, b"\0") for c in args.cards.split(",") if c.strip())
    drivers = None
    if args.arrivals:
        drivers = Drivers(fleet, DriverConfig(mean_arrival=args.arrivals * 60, patience=args.patience * 60,
                                              cards=cards, card_share=args.card_share))
    out.write(f"simulating {args.piles} piles x {args.guns} guns against {args.host}:{args.port}, "
              f"seed {args.seed}, speed x{args.speed:g}, clock from {fleet.clock.start:%Y-%m-%d %H:%M:%S}\n")
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()  # SIGTERM / Ctrl-C: end the run (a second one abandons a drain)
    signals: list[int] = []

    def on_signal(signum: int) -> None:
        signals.append(signum)
        ended.set()
        if len(signals) > 1 and draining is not None:
            draining.cancel()

    draining: asyncio.Task[list[str]] | None = None
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
    unconfirmed: list[str] | None = None
    try:
        await fleet.start(wait=False)
        if drivers is not None:
            drivers.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), args.duration or None)
        if signals and not args.drain:
            out.write(f"simulate: {signal.Signals(signals[0]).name}: stopping without draining\n")
        if args.drain:
            if drivers is not None:
                await drivers.stop()
                drivers = None
            out.write(f"draining: no new starts, stopping every charge at the pile, waiting up to "
                      f"{args.drain_timeout:g} s for every record to be confirmed\n")
            out.flush()
            draining = asyncio.ensure_future(fleet.drain(args.drain_timeout))
            try:
                unconfirmed = await draining
            except asyncio.CancelledError:
                if len(signals) < 2:
                    raise
                unconfirmed = fleet.unconfirmed()
                out.write("draining abandoned (second signal)\n")
            if unconfirmed:
                out.write(f"drain: {len(unconfirmed)} records not confirmed:\n")
                for line in unconfirmed:
                    out.write(f"  {line}\n")
            else:
                out.write("drained: every record confirmed\n")
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        if drivers is not None:
            await drivers.stop()
        with contextlib.suppress(Exception):
            await fleet.close()
        if args.events is not None:
            args.events.flush()
        summary = fleet.summary()
        out.write("summary: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items()) + "\n")
        out.flush()
    ok = summary["login_failed"] == 0 and summary["records_unconfirmed"] == 0 and summary["login_ok"] > 0
    if signals and not args.drain:
        return 128 + signals[0]  # 130 for Ctrl-C, 143 for SIGTERM, as before
    return 0 if ok else 1


async def _load(args: argparse.Namespace, out: TextIO) -> int:
    config = LoadConfig(connections=args.piles, guns=args.guns, heartbeat_interval=args.heartbeat,
                        realtime_interval=args.realtime, duration=args.duration or 60.0,
                        connect_rate=args.connect_rate, first_pile=args.first_pile, quirky=args.quirky,
                        seed=args.seed)
    out.write(f"load: {config.connections} connections x {config.guns} guns against {args.host}:{args.port}, "
              f"offering {config.frames_per_second:.0f} frames/s for {config.duration:g} s\n")
    report = await LoadFleet(args.host, args.port, config).run()
    for line in report.lines():
        out.write(line + "\n")
    return 0 if report.logged_in == config.connections else 1


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m pile_link.simulator.cli``) until app.py wires the subcommand."""
    assert __doc__ is not None
    parser = argparse.ArgumentParser(prog="simulate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="examples:" + __doc__.split("Examples::")[1])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
