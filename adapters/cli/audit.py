"""``chargeledger audit replay|verify|seal|export``: the auditor's command line.

Exit codes: 0 no difference / the chain holds; 1 differences or broken links (each one listed);
2 bad arguments. The database is ``DATABASE_URL`` (or ``--database-url``); without it the
project's own servers under ./var are used with the demo's database (``--database``). NATS is
``NATS_URL`` (or ``--nats-url``): ``seal`` publishes there, ``verify`` compares against it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time as day_time, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

from adapters.cli.servers import servers
from adapters.cli.shards import add_shard_argument, shard_database
from adapters.servers.nats_users import AUDITOR


def _instant(text: str) -> datetime:
    """A date (the start of that UTC day) or an ISO instant (UTC unless it says otherwise)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), day_time(), tzinfo=timezone.utc)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD) or ISO instant: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _day_end(text: str) -> datetime:
    """``--to 2026-11-22`` includes that whole day."""
    value = _instant(text)
    return value + timedelta(days=1) if len(text) == 10 else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""),
                        help="the ledger's database (default: DATABASE_URL, else the embedded server)")
    parser.add_argument("--database", default="demo", help="database name on the embedded server (default demo)")
    parser.add_argument("--nats-url", default=os.environ.get("NATS_URL", ""),
                        help="NATS with JetStream for the seals (default: NATS_URL, else the embedded server)")
    add_shard_argument(parser)  # on a sharded deployment: the shard to audit (one run per shard)
    sub = parser.add_subparsers(dest="audit_command", required=True)

    replay = sub.add_parser("replay", help="rebuild every wallet and session from the events and check the books")
    replay.add_argument("--tenant", type=UUID, help="only this tenant's aggregates")
    replay.add_argument("--from", dest="start", type=_instant, help="period start (date or instant, UTC)")
    replay.add_argument("--to", dest="end", type=_day_end, help="period end: replay stops there (a date includes it)")
    replay.add_argument("--json", action="store_true", help="print the report as JSON")
    replay.add_argument("--reference", action="store_true",
                        help="decode with the Applications' mappers and real aggregates (slower; same result)")
    replay.add_argument("--load-wallets", action="store_true",
                        help="also load every wallet through the Wallets Application (slower than comparing "
                             "its snapshots)")
    replay.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    verify = sub.add_parser("verify", help="recompute the hash chain and name the first broken link")
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--no-nats", action="store_true", help="do not compare the seals with their NATS copies")

    seal = sub.add_parser("seal", help="extend the hash chain and seal it (Postgres and NATS)")
    seal.add_argument("--every", type=float, default=0, help="keep sealing every N seconds")

    export = sub.add_parser("export", help="journal, trial balance and payment-bill reconciliation as CSV")
    export.add_argument("--tenant", type=UUID)
    export.add_argument("--from", dest="start", type=_instant)
    export.add_argument("--to", dest="end", type=_day_end)
    export.add_argument("--out", type=Path, default=Path("."), help="directory for the CSV files")
    export.add_argument("--wechat-bill", type=Path, help="a WeChat Pay trade bill (ALL) of the period")
    export.add_argument("--alipay-bill", type=Path, help="an Alipay trade bill of the period")


@contextmanager
def _urls(args: argparse.Namespace, need_nats: bool) -> Iterator[tuple[str, str]]:
    if args.database_url and (args.nats_url or not need_nats):
        yield args.database_url, args.nats_url
        return
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    with servers(AUDITOR) as (server_url, nats_url):
        database_url = args.database_url or make_conninfo(
            **{**conninfo_to_dict(server_url), "dbname": args.database})
        yield database_url, args.nats_url or nats_url


def run(args: argparse.Namespace) -> int:
    command = args.audit_command
    if args.shard or os.environ.get("CHARGELEDGER_SHARDS", "").strip():
        _, args.database_url = shard_database(args, args.database_url)
    with _urls(args, need_nats=command in ("seal", "verify") and not getattr(args, "no_nats", False)) as (db, nats):
        if command == "replay":
            return _replay(args, db)
        if command == "verify":
            return _verify(args, db, None if args.no_nats else nats)
        if command == "seal":
            return _seal(args, db, nats)
        return _export(args, db)


def _replay(args: argparse.Namespace, database_url: str) -> int:
    from adapters.audit.replay import replay

    started = time.monotonic()

    def progress(done: int) -> None:
        if not args.quiet:
            rate = done / max(time.monotonic() - started, 1e-9)
            print(f"replayed {done:,} events ({rate:,.0f}/s)", file=sys.stderr, flush=True)

    report = replay(database_url, tenant=args.tenant, period_from=args.start, period_to=args.end,
                    fast=not args.reference, live="load" if args.load_wallets else "snapshots",
                    progress=progress)
    print(json.dumps(report.as_dict(), indent=2, default=str) if args.json else report.as_text())
    return 0 if report.ok else 1


def _verify(args: argparse.Namespace, database_url: str, nats_url: str | None) -> int:
    from adapters.audit.verify import verify

    report = verify(database_url, nats_url or None)
    print(json.dumps(report.as_dict(), indent=2, default=str) if args.json else report.as_text())
    return 0 if report.ok else 1


def _seal(args: argparse.Namespace, database_url: str, nats_url: str) -> int:
    from adapters.audit.chain import seal
    from adapters.audit.seals import publish_seals

    while True:
        for s in seal(database_url):
            print(f"sealed {s.application} at #{s.position} ({s.events} events), head {s.head.hex()}"
                  + (f"; BACKDATED events after the previous seal: {list(s.backdated)}" if s.backdated else ""))
        if nats_url:
            published = publish_seals(database_url, nats_url)
            if published:
                print(f"published {published} seal(s) to NATS JetStream")
        if not args.every:
            return 0
        time.sleep(args.every)


def _export(args: argparse.Namespace, database_url: str) -> int:
    from adapters.audit.export import export_books, ledger_lines, read_bills, reconcile, write_reconciliation

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "journal.csv", "w", newline="", encoding="utf-8") as journal, \
            open(args.out / "trial_balance.csv", "w", newline="", encoding="utf-8") as tb:
        accounts = export_books(database_url, journal, tb, start=args.start, end=args.end, tenant=args.tenant)
    print(f"wrote {args.out / 'journal.csv'} and {args.out / 'trial_balance.csv'} ({len(accounts)} accounts)")
    if not (args.wechat_bill or args.alipay_bill):
        return 0
    lines = reconcile(ledger_lines(database_url, start=args.start, end=args.end, tenant=args.tenant),
                      read_bills(args.wechat_bill, args.alipay_bill))
    with open(args.out / "reconciliation.csv", "w", newline="", encoding="utf-8") as out:
        write_reconciliation(lines, out)
    counts: dict[str, Any] = {}
    for line in lines:
        counts[line.status] = counts.get(line.status, 0) + 1
    print(f"wrote {args.out / 'reconciliation.csv'}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0 if set(counts) <= {"matched"} else 1
