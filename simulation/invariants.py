"""What must hold after every step, and at quiescence; checked by an auditor that only reads the store.

The auditor has its own Ledger on the store (no cache shared with any platform process) and follows
the Sessions and Wallets logs itself: the books are posted from the wallet events (``domain.books``),
so the wallets' balances are checked against their own events too. The amounts each driver paid are
compared at quiescence with an independent reference pricing (Decimal yuan, written here) of the
energy the piles recorded.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from domain.books import Books
from domain.ledger import Ledger
from domain.session import ChargingSession
from domain.wallet import REVENUE_ELECTRICITY, REVENUE_SERVICE, Wallet
from adapters.followers.watchdog import CLOSING, FOLLOWUP_GRACE
from simulation.world import DRIVERS, POPO, World, _reattach, tier_prices


class Violation(AssertionError):
    """An invariant that does not hold: its name and what was seen."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant


def reference_fee(tier_energy: tuple[int, ...], unit_prices: list[int]) -> int:
    """kWh × yuan/kWh in Decimal, summed, rounded to 0.01 yuan half up once: in fen."""
    yuan = sum((Decimal(e) / 10000) * (Decimal(p) / 100000) for e, p in zip(tier_energy, unit_prices))
    return int((yuan.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * 100).to_integral_value())


class Auditor:
    def __init__(self, world: World) -> None:
        self.world = world
        self.ledger = Ledger(POPO)
        for app in self.ledger.applications:
            _reattach(app, *world.store.recorders[app.name])
        self.books = Books()
        self.positions = {"sessions": 0, "wallets": 0}
        self.sessions: dict[str, UUID | None] = {}  # every session opened: trade_no -> wallet
        self.open: dict[UUID, str] = {}  # the sessions open as their events say: id -> trade_no
        self.wallet_ids = {Wallet.create_id(world.tenant_id, d): d for d in DRIVERS}
        self.last_sweep: datetime | None = None  # the simulated time of the last sweep that completed

    def follow(self) -> None:
        for name, app in (("sessions", self.ledger.sessions), ("wallets", self.ledger.wallets)):
            for notification in app.recorder.select_notifications(start=self.positions[name] + 1, limit=10_000):
                self.positions[name] = notification.id
                event = app.mapper.to_domain_event(notification)
                if name == "wallets":
                    self.books.post(event)
                elif not isinstance(event, ChargingSession.Event):
                    continue  # another aggregate of the Sessions log (a roaming charge)
                elif type(event).__name__ == "Opened":
                    self.sessions[event.trade_no] = event.wallet_id
                    self.open[event.originator_id] = event.trade_no
                elif type(event).__name__ in CLOSING:
                    self.open.pop(event.originator_id, None)

    def wallet(self, wallet_id: UUID) -> Wallet:
        return self.ledger.wallets.get(wallet_id, Wallet, "wallet", fresh=True, copy=False)

    def session(self, trade_no: str) -> ChargingSession:
        return self.ledger.sessions.get(ChargingSession.create_id(trade_no), ChargingSession, "session",
                                        fresh=True, copy=False)

    # ---- after every step ---------------------------------------------------------------------------
    def check(self) -> None:
        self.follow()
        if not self.books.balanced:
            raise Violation("trial balance", f"the books from the wallet events are off by {self.books.trial_balance}")
        totals: dict[str, int] = {}
        for wallet_id, driver in self.wallet_ids.items():
            wallet = self.wallet(wallet_id)
            self.check_wallet(driver, wallet)
            for account, amount in wallet.balances.items():
                totals[account] = totals.get(account, 0) + amount
        books = {a: v for a, v in self.books.accounts.items() if v}
        if {a: v for a, v in totals.items() if v} != books:
            raise Violation("books equal wallets", f"wallets {totals} but the events post {books}")
        self.check_keys()

    def check_wallet(self, driver: str, wallet: Wallet) -> None:
        if sum(wallet.balances.values()) != 0:
            raise Violation("trial balance per wallet", f"{driver}: {wallet.balances}")
        for account, amount in (("available", wallet.available), ("held", wallet.held),
                                ("refund_pending", wallet.refund_pending), ("arrears", wallet.arrears)):
            if amount < 0:
                raise Violation("no negative account", f"{driver}: {account} = {amount}")
        if wallet.available > 0 and wallet.arrears > 0:
            raise Violation("available and arrears", f"{driver}: available {wallet.available} while arrears "
                                                      f"{wallet.arrears}")
        if wallet.held != sum(wallet.holds.values()):
            raise Violation("held is the holds", f"{driver}: held {wallet.held}, holds {wallet.holds}")
        pending = sum(r["amount"] for r in wallet.refunds.values() if r["state"] == "requested")
        if wallet.refund_pending != pending:
            raise Violation("refund_pending is the pending refunds", f"{driver}: {wallet.refund_pending} != {pending}")
        for trade_no, amount in wallet.holds.items():
            self.check_hold(driver, wallet, trade_no, amount)
        for trade_no in self.open.values():
            if self.sessions[trade_no] == wallet.id and trade_no not in wallet.holds:
                session = self.session(trade_no)
                if session.is_open and session.hold_fen:
                    raise Violation("an open session keeps its hold", f"{driver}: {trade_no} is {session.state} "
                                                                     f"but its hold is gone")

    def check_hold(self, driver: str, wallet: Wallet, trade_no: str, amount: int) -> None:
        if trade_no not in self.sessions:
            raise Violation("every hold has its session", f"{driver}: hold {trade_no} of {amount} fen, no session")
        session = self.session(trade_no)
        if session.wallet_id != wallet.id or session.hold_fen != amount:
            raise Violation("every hold has its session", f"{driver}: hold {trade_no} of {amount} fen, session "
                                                          f"holds {session.hold_fen}")
        if session.is_open:
            return
        swept = self.last_sweep
        if swept is not None and session.closed_at is not None and swept >= session.closed_at + FOLLOWUP_GRACE:
            raise Violation("a closed session's hold is released", f"{driver}: {trade_no} {session.state} at "
                                                                   f"{session.closed_at:%H:%M:%S}, hold of {amount} "
                                                                   f"fen still there after a sweep at {swept:%H:%M:%S}")

    def check_keys(self) -> None:
        """One Idempotency-Key, at most one session: every app session has exactly one key's row."""
        rows = self.world.store.start_rows
        by_key: dict[tuple[str, str], str] = {}
        for driver, key, trade_no in rows:
            if (driver, key) in by_key:
                raise Violation("one key, one session", f"{driver} {key}: {by_key[(driver, key)]} and {trade_no}")
            by_key[(driver, key)] = trade_no
        sessions_of = {d: 0 for d in self.wallet_ids.values()}
        for wallet_id in self.sessions.values():
            if wallet_id in self.wallet_ids:
                sessions_of[self.wallet_ids[wallet_id]] += 1
        keys_of = {d: 0 for d in self.wallet_ids.values()}
        for driver, _, _ in rows:
            keys_of[driver] += 1
        if sessions_of != keys_of:
            raise Violation("one key, one session", f"sessions per driver {sessions_of}, keys {keys_of}")

    # ---- at quiescence ------------------------------------------------------------------------------
    def check_quiescent(self, piles: list[Any]) -> None:
        self.check()
        for trade_no in self.sessions:
            session = self.session(trade_no)
            if session.is_open:
                raise Violation("every session terminal", f"{trade_no} is {session.state}")
        for wallet_id, driver in self.wallet_ids.items():
            if self.wallet(wallet_id).holds:
                raise Violation("every hold closed", f"{driver}: {self.wallet(wallet_id).holds}")
        recorded = {t: e for pile in piles for t, e in pile.recorded.items()}
        prices = tier_prices()
        for wallet_id, driver in self.wallet_ids.items():
            wallet = self.wallet(wallet_id)
            mine = [t for t, w in self.sessions.items() if w == wallet_id]
            owed_e = sum(reference_fee(recorded[t], [p[0] for p in prices]) for t in mine if t in recorded)
            owed_s = sum(reference_fee(recorded[t], [p[1] for p in prices]) for t in mine if t in recorded)
            paid_e, paid_s = -wallet.balances.get(REVENUE_ELECTRICITY, 0), -wallet.balances.get(REVENUE_SERVICE, 0)
            if (paid_e, paid_s) != (owed_e, owed_s):
                raise Violation("paid what the piles recorded", f"{driver} paid {paid_e}+{paid_s} fen, the piles' "
                                                                f"energy prices to {owed_e}+{owed_s} fen")

    def close(self) -> None:
        self.ledger.close()

