"""Ledger to pile: what the gateway sends the piles it holds, and when (design.md, flow 3).

A command is an event (``ChargingSession.Opened`` of a platform start, ``StopRequested``,
``Pile.CommandRequested``, a tariff change). The relay publishes it to JetStream; every gateway follows
those subjects (:mod:`pile_link.commands`) and the one holding the pile's connection sends the frame.
A NATS message is only a hint of where to look: :meth:`OwedDelivery.handle_command_event` reads the
session, or the stored event at the message's originator id and version, from the store and sends
what the ledger says the pile is owed (:mod:`pile_link.owed`), never what the message body says.

A command is owed until the pile acknowledges it or it no longer applies, so what a pile missed is
delivered when it is next online: at login and after the gateway follows NATS again,
:meth:`OwedDelivery.deliver_owed` asks the store what each pile held here is owed and sends it. Each
session's start and stop goes out at most once per connection.

:class:`OwedDelivery` is a part of :class:`~pile_link.gateway.Gateway` (which inherits it); it uses
the gateway members listed at the top of the class.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from adapters.followers.open_sessions import OpenSessions
from adapters.metrics import instruments
from adapters.servers.outage import Outage
from domain.errors import DomainError
from domain.session import ChargingSession
from pile_link.link import PileLink
from pile_link.owed import owed_for_command, owed_for_session
from pile_link.owed_reads import OwedReads
from pile_link.ykc import RemoteStart

log = logging.getLogger("chargeledger.pile_link")

SENT_MEMORY = 100_000  # the stored commands a gateway remembers having sent, so each goes out once
SESSION_PILES_MEMORY = 100_000  # sessions whose pile a gateway remembers (from their verified Opened event)
OWED_WAIT = 5.0  # seconds after a login to wait for the guns' first realtime reports before a start or a push


class OwedDelivery:
    """Sending each pile held here what the ledger says it is owed."""

    # What it uses of the gateway (set by Gateway.__init__).
    ledger: Any  # domain.ledger.Ledger
    gateway_id: str
    clock: Callable[[], datetime]
    stats: Counter[str]
    links: dict[str, PileLink]  # by pile number, the piles logged in here
    links_by_id: dict[UUID, PileLink]
    session_piles: OrderedDict[UUID, str]  # session id -> its pile, as its stored Opened event says
    commissioning_balance_fen: int
    owed_wait: float
    open_sessions: OpenSessions
    index_caught_up: Callable[[], Awaitable[Any]]  # open_sessions brought up to date (shared)
    sent: OrderedDict[tuple[Any, ...], None]  # stored commands sent, oldest first
    owed_reads: OwedReads  # what piles logging in are owed, read in batches

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        raise NotImplementedError

    def tariff_for_pile(self, pile_no: str) -> Any:
        raise NotImplementedError

    async def handle_command_event(self, subject: str, headers: dict[str, str], body: bytes) -> None:
        """Send what the ledger says a pile is owed for the stored event a message points at; the
        message body is never read. A message pointing at no stored event of its subject's type
        (forged, or corrupt) sends nothing: counted as ``commands_unverified`` and logged."""
        self.stats["command_events"] += 1
        try:
            _, application, aggregate, name = subject.split(".")
            originator_id = UUID(headers["Chargeledger-Originator-Id"])
            version = int(headers["Chargeledger-Originator-Version"])
        except (KeyError, ValueError):
            self.unverified(subject, headers, "malformed subject or headers")
            return
        if self.for_another_gateway(aggregate, originator_id):
            self.stats["commands_elsewhere"] += 1  # nothing would be sent here, genuine or not: nothing read
            return
        stored = await self.run(self.stored_event, application, originator_id, version, f"{aggregate}.{name}")
        instruments.command_event(stored.timestamp if stored is not None else None)  # for command latency
        if stored is None:
            self.unverified(subject, headers, "the store holds no such event")
        elif aggregate == "ChargingSession":
            if name == "Opened":
                self.remember_pile(originator_id, stored.pile_no)
                if stored.pile_no not in self.links:
                    self.stats["commands_elsewhere"] += 1
                    return
            await self.send_owed_for_session(originator_id)
        elif self.once(("event", originator_id, version)):
            await self.send_owed_for_event(aggregate, name, stored)

    def for_another_gateway(self, aggregate: str, originator_id: UUID) -> bool:
        """Known without reading the store: the event concerns one pile, and this gateway does not hold it
        (a pile's own command, or a session whose pile its verified Opened event named). With several
        gateways, each follows every command: only the one holding the pile reads the session. A pile that
        logs in here afterwards is sent what it is owed at its login, as always."""
        if aggregate == "Pile":
            return originator_id not in self.links_by_id
        if aggregate == "ChargingSession":
            pile_no = self.session_piles.get(originator_id)
            return pile_no is not None and pile_no not in self.links
        return False  # a station's or a tariff's change may concern any pile held here

    def remember_pile(self, session_id: UUID, pile_no: str) -> None:
        self.session_piles[session_id] = pile_no
        if len(self.session_piles) > SESSION_PILES_MEMORY:
            self.session_piles.popitem(last=False)

    def unverified(self, subject: str, headers: dict[str, str], why: str) -> None:
        self.stats["commands_unverified"] += 1
        log.warning("%s (%s v%s): nothing sent, %s", subject, headers.get("Chargeledger-Originator-Id"),
                    headers.get("Chargeledger-Originator-Version"), why)

    def once(self, key: tuple[Any, ...]) -> bool:
        """True the first time this gateway sends ``key`` (a stored command, or a tariff change)."""
        if key in self.sent:
            return False
        self.sent[key] = None
        if len(self.sent) > SENT_MEMORY:
            self.sent.popitem(last=False)
        return True

    def stored_event(self, application: str, originator_id: UUID, version: int, qualname: str) -> Any | None:
        """The event the store holds at this originator id and version, if it is of this type."""
        app = {a.name: a for a in self.ledger.applications}.get(application)
        if app is None:
            return None
        found = app.recorder.select_events(originator_id, gt=version - 1, lte=version, limit=1)
        if not found or found[0].topic.rsplit(":", 1)[-1] != qualname:
            return None
        return app.mapper.to_domain_event(found[0])

    def fresh_session(self, session_id: UUID) -> ChargingSession | None:
        try:
            return self.ledger.sessions.get(session_id, ChargingSession, "session", fresh=True)
        except DomainError:
            return None

    def fresh_sessions(self, trade_nos: list[str]) -> list[ChargingSession]:
        found = (self.fresh_session(ChargingSession.create_id(trade_no)) for trade_no in trade_nos)
        return [session for session in found if session is not None]

    async def send_owed_for_session(self, session_id: UUID) -> None:
        """0x34 or 0x36 if the session, read fresh from the store, says its pile (held here) is owed one."""
        session = await self.run(self.fresh_session, session_id)
        link = self.links.get(session.pile_no) if session is not None else None
        if link is not None:  # else gone, or a pile another gateway holds
            self.send_owed(link, session)  # type: ignore[arg-type]

    def send_owed(self, link: PileLink, session: ChargingSession, again: bool = False) -> None:
        """What ``owed_for_session`` says, given what the session's gun last reported on this
        connection; each frame at most once per connection. ``again``: sent from what the store
        says is owed rather than from a new event, so a start may be one the pile already took."""
        report = link.reported.get(session.gun_no)
        for frame in owed_for_session(session, self.clock(), self.commissioning_balance_fen, report):
            if not link.send_once(("session", session.id, frame.TYPE), frame):
                continue
            if again and isinstance(frame, RemoteStart) and session.opened_at <= link.logged_in_at:
                link.start_sent_again(session.trade_no)
            self._observe(session.pile_no, "start" if isinstance(frame, RemoteStart) else "stop")
            self.stats["owed_sent" if again else "commands_sent"] += 1

    def tariff_owed(self, pile_no: str) -> bool:
        """Is the pile owed its tariff (its confirmed billing model is not the one in force)? A pile
        with no tariff assigned is owed none. Run in the pool."""
        try:
            return self.ledger.tariff_owed(pile_no) is not None
        except DomainError:
            return False

    # ---- what a pile is owed, whatever reached this gateway through NATS ---------------------------------
    async def deliver_owed_to_all(self) -> None:
        """After following NATS again: every pile held here gets what it is owed (what NATS carried
        while this gateway was not following, or what it never carried)."""
        links = list(self.links.values())
        log.info("gateway %s: delivering what %d piles are owed", self.gateway_id, len(links))
        await asyncio.gather(*(self.deliver_owed_until_done(link) for link in links))

    async def deliver_owed_until_done(self, link: PileLink) -> None:
        """:meth:`deliver_owed`, tried again with backoff (a database outage) while the pile is connected."""
        outage = Outage(f"delivering what pile {link.pile_no} is owed", "owed_delivery", log,
                        self.stats)
        while not link.closed:
            try:
                await self.deliver_owed(link)
            except Exception as error:  # noqa: BLE001 - tried again while the pile is here
                await asyncio.sleep(outage.failed(error))
            else:
                outage.succeeded()
                return

    async def deliver_owed(self, link: PileLink) -> None:
        """Send the pile on ``link`` what the store says it is owed: a start or a stop for each of its
        open sessions that calls for one, and its tariff if the billing model it confirmed is not the
        one in force.

        The pile's open sessions come from the ``open_sessions`` index, brought up to date first (so
        this depends on no other process), and each is then read from the store: the index says
        where to look, the aggregate decides. Stops and starts wait until the gun concerned has
        reported on this connection (0x13; asked for with 0x12), for at most ``owed_wait`` seconds,
        and each session is read again after that wait: a pile that logs in uploads what it buffered
        first, and a gun reporting the session charging (a start whose answer was lost) makes its
        start no longer owed; a gun charging another session is sent neither (``owed_for_session``).
        The tariff waits the same way for every gun, then goes when the pile is idle."""
        await self.index_caught_up()
        trade_nos, tariff_owed = await self.owed_reads.ask(link.pile_no)  # read with other piles' (owed_reads.py)
        sessions = await self.run(self.fresh_sessions, trade_nos) if trade_nos else []
        now = self.clock()
        guns = {s.gun_no for s in sessions if owed_for_session(s, now, self.commissioning_balance_fen)}
        if tariff_owed:
            guns |= link.gun_numbers
        if not guns:
            return
        await link.await_reports(guns, self.owed_wait)
        for session in await self.run(self.fresh_sessions, [s.trade_no for s in sessions if s.gun_no in guns]):
            self.send_owed(link, session, again=True)
        if tariff_owed and await self.run(self.tariff_owed, link.pile_no):
            await link.push_tariff_when_idle()
            self._observe(link.pile_no, "push_tariff")  # type: ignore[arg-type]

    async def send_owed_for_event(self, aggregate: str, name: str, event: Any) -> None:
        """A stored pile command, to its pile if held here; a tariff change, to the held piles it concerns."""
        if (aggregate, name) == ("Pile", "CommandRequested"):
            link = self.links_by_id.get(event.originator_id)
            if link is not None:
                await self.send_pile_command(link, event.command, event.params)
            return
        for link in list(self.links.values()):
            await self.push_if_changed(link, aggregate, event.originator_id)

    async def send_pile_command(self, link: PileLink, command: str, params: dict[str, Any]) -> None:
        if command == "push_tariff":
            await link.push_tariff_when_idle()
        for frame in owed_for_command(link.pile_no, command, params, link.gun_numbers):  # type: ignore[arg-type]
            link.send(frame)
        self._observe(link.pile_no, command)  # type: ignore[arg-type]

    async def push_if_changed(self, link: PileLink, aggregate: str, originator_id: UUID) -> None:
        pile = await self.run(self.ledger.registry.pile, link.pile_no)
        tariff = await self.run(self.tariff_for_pile, link.pile_no)
        if ((aggregate == "Pile" and pile.id == originator_id)
                or (aggregate == "Station" and pile.station_id == originator_id)
                or (aggregate == "Tariff" and tariff.id == originator_id)):
            await link.push_tariff_when_idle()
            self._observe(link.pile_no, "push_tariff")  # type: ignore[arg-type]

    def _observe(self, pile_no: str, kind: str) -> None:
        self.stats[f"sent_{kind}"] += 1
        instruments.command_sent(kind)
