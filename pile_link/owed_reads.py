"""What each pile that logs in is owed, read for many piles at once (the first step of
:meth:`pile_link.delivery.OwedDelivery.deliver_owed`).

Every login asks the store two things: which sessions of the pile are open (the ``open_sessions``
index) and whether its confirmed billing model is the tariff in force. Asked one pile at a time,
that was four or five queries per login in the gateway's pool; in a reconnect storm (thousands of
logins a second) they queued in front of everything else. :class:`OwedReads` answers the piles that
ask while one batch is being read with the next batch: one query for the open sessions of all of
them, one each for their stations and their tariffs (each brought up to date from the store, as a
single read would be), the piles' own tariff and confirmed billing model taken from the facts their
logins read a moment before (:class:`~pile_link.pile_facts.LoginFacts`), not loaded again. What the
answer says is then checked as before: each session is read again before anything is sent, and a
tariff push is checked again before it goes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from domain.errors import DomainError, NotFound
from domain.registry import Pile, Station
from domain.tariff import Tariff
from pile_link.batches import Batches
from pile_link.pile_facts import PileFacts, load_piles

MAX_BATCH = 2000

OPEN_SESSIONS = "SELECT pile_no, trade_no FROM open_sessions WHERE pile_no = ANY(%s) ORDER BY pile_no, gun_no, trade_no"


class OwedReads:
    """``await ask(pile_no)`` -> (the trade serials of its open sessions, whether it is owed its tariff)."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway  # its ledger, run (the pool) and stats
        self.batches: Batches[tuple[list[str], bool]] = Batches(
            lambda pile_nos: self.gateway.run(self.read, pile_nos), MAX_BATCH, self.counted)

    def counted(self, seconds: float) -> None:
        self.gateway.stats["owed_batches"] += 1

    async def ask(self, pile_no: str) -> tuple[list[str], bool]:
        return await self.batches.ask(pile_no)

    def read(self, pile_nos: list[str]) -> dict[str, Any]:
        """One batch, in the pool: the open sessions of every pile, and whether each is owed its tariff."""
        ledger = self.gateway.ledger
        with ledger.sessions.recorder.datastore.get_connection() as conn:
            rows = conn.execute(OPEN_SESSIONS, (pile_nos,)).fetchall()
        trades: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            trades[row["pile_no"]].append(row["trade_no"])
        owed = self.tariffs_owed(pile_nos)
        return {p: (trades.get(p, []), owed[p]) for p in pile_nos}

    def tariffs_owed(self, pile_nos: list[str]) -> dict[str, bool]:
        """Whether each pile's confirmed billing model is not the tariff in force (as
        ``Ledger.tariff_owed`` says; a pile with no tariff, or unknown, is owed none)."""
        try:
            return self._tariffs_owed(pile_nos)
        except DomainError:  # a pile, station or tariff not found: one by one, each as its own read says
            return {p: self.gateway.tariff_owed(p) for p in pile_nos}

    def _tariffs_owed(self, pile_nos: list[str]) -> dict[str, bool]:
        ledger = self.gateway.ledger
        piles = self.piles(ledger.registry, pile_nos)
        station_ids = list({pile.station_id for pile in piles.values() if pile.tariff_id is None})
        stations = dict(zip(station_ids, ledger.registry.get_all(*[(s, Station, "station") for s in station_ids],
                                                                 copy=False)))
        in_force = {p: pile.tariff_id or stations[pile.station_id].tariff_id for p, pile in piles.items()}
        tariff_ids = list({t for t in in_force.values() if t is not None})
        tariffs = dict(zip(tariff_ids, ledger.tariffs.get_all(*[(t, Tariff, "tariff") for t in tariff_ids],
                                                              copy=False)))
        return {p: in_force[p] is not None and not pile.holds(in_force[p], tariffs[in_force[p]].tariff_version)
                for p, pile in piles.items()}

    def piles(self, registry: Any, pile_nos: list[str]) -> dict[str, PileFacts]:
        """Each pile's facts as its login read them a moment ago (:class:`~pile_link.pile_facts.LoginFacts`:
        the store as it was then, which is all this first look needs: a tariff assigned since reaches the
        pile through its event, and a push is checked again before it goes); a pile not known there, from
        the store in one query. Raises NotFound for one never registered."""
        known = self.gateway.login_facts.known
        facts = {p: known[p] for p in pile_nos if p in known}
        rest = {Pile.create_id(p): p for p in pile_nos if p not in facts}
        loaded = load_piles(registry, list(rest)) if rest else {}
        for pile_id, pile_no in rest.items():
            pile = loaded.get(pile_id)
            if not isinstance(pile, Pile):
                raise NotFound(f"no pile {pile_id}", id=str(pile_id))
            facts[pile_no] = PileFacts.of(pile, "")
        return facts
