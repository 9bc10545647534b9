"""The books view: what every account family holds over all wallets, the open holds, the sessions closed.

The figures the operations dashboard watches (docs/operations.md, "Metrics and alarms to watch"), kept
current by the projections so a metrics scrape reads a handful of rows instead of replaying wallets:

* ``book_accounts``: per account family, the sum of every posting (debit > 0, as ``domain/books.py``
  counts them); a family is the account's name with a party's suffix cut (``receivable:<partner>`` and
  ``payable:<peer>`` are ``receivable`` and ``payable``), so the set stays small whatever the partners;
  the sum over every family is the trial balance, 0 while the books balance;
* ``book_holds``: each hold placed and neither captured nor released (wallet, hold id, fen);
* ``book_closings``: how many sessions closed, by outcome (``settled``, ``resettled``, ``failed``,
  ``abandoned``, and ``roaming_settled`` for our drivers' charges on a peer's pile).

:func:`figures` reads all three in one round trip.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import tuple_row

from domain.postings import posting_sets_of
from domain.wallet import PAYABLE, RECEIVABLE
from projections.base import Item, View, on

POSTINGS = ("Wallet.CreditLineOpened", "Wallet.ToppedUp", "Wallet.HoldPlaced", "Wallet.Captured", "Wallet.Released",
            "Wallet.Charged", "Wallet.CapturedToPayable", "Wallet.ChargedToPayable", "Wallet.CreditedBack",
            "Wallet.RefundRequested", "Wallet.RefundCompleted", "Wallet.RefundFailed", "Wallet.Adjusted")
HOLD_ENDS = ("Wallet.Captured", "Wallet.Released", "Wallet.CapturedToPayable")
CLOSINGS = {"ChargingSession.Settled": "settled", "ChargingSession.Resettled": "resettled",
            "ChargingSession.Failed": "failed", "ChargingSession.Abandoned": "abandoned",
            "RoamingCharge.Settled": "roaming_settled"}
FIGURES = """
SELECT 'account' AS kind, family AS name, fen AS value FROM book_accounts
UNION ALL SELECT 'holds', 'open', count(*) FROM book_holds
UNION ALL SELECT 'held', 'fen', coalesce(sum(fen), 0) FROM book_holds
UNION ALL SELECT 'closed', outcome, count FROM book_closings"""


def family(account: str) -> str:
    """The account's family: a party's own account (``receivable:X``, ``payable:Y``) counts as its kind."""
    for prefix in (RECEIVABLE, PAYABLE):
        if account.startswith(prefix):
            return prefix.rstrip(":")
    return account


class Books(View):
    name = "books"
    tables = ("book_accounts", "book_holds", "book_closings")
    ddl = (
        "CREATE TABLE IF NOT EXISTS book_accounts (family text PRIMARY KEY, fen bigint NOT NULL)",
        """CREATE TABLE IF NOT EXISTS book_holds (
            wallet_id uuid NOT NULL, hold_id text NOT NULL, fen bigint NOT NULL, PRIMARY KEY (wallet_id, hold_id))""",
        "CREATE TABLE IF NOT EXISTS book_closings (outcome text PRIMARY KEY, count bigint NOT NULL)",
    )

    @on("Wallets", *POSTINGS)
    def posted(self, cur: Any, item: Item) -> None:
        e = item.event
        totals: dict[str, int] = {}
        for postings in posting_sets_of(e):
            for account, amount in postings:
                totals[family(account)] = totals.get(family(account), 0) + amount
        for name, fen in sorted(totals.items()):
            cur.execute("INSERT INTO book_accounts AS a VALUES (%s, %s) "
                        "ON CONFLICT (family) DO UPDATE SET fen = a.fen + EXCLUDED.fen", (name, fen))
        if item.name == "Wallet.HoldPlaced":
            cur.execute("INSERT INTO book_holds VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                        (e.originator_id, e.hold_id, e.postings[0][1]))
        elif item.name in HOLD_ENDS:
            cur.execute("DELETE FROM book_holds WHERE wallet_id = %s AND hold_id = %s", (e.originator_id, e.hold_id))

    @on("Sessions", *CLOSINGS)
    def closed(self, cur: Any, item: Item) -> None:
        cur.execute("INSERT INTO book_closings AS c VALUES (%s, 1) "
                    "ON CONFLICT (outcome) DO UPDATE SET count = c.count + 1", (CLOSINGS[item.name],))


def figures(conn: Any) -> dict[tuple[str, str], int]:
    """``{(kind, name): value}``: ``("account", family)`` fen, ``("holds", "open")`` count,
    ``("held", "fen")`` fen still held, ``("closed", outcome)`` sessions."""
    with conn.cursor(row_factory=tuple_row) as cur:  # whatever rows the connection gives by default
        return {(kind, name): int(value) for kind, name, value in cur.execute(FIGURES).fetchall()}
