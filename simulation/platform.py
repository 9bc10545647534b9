"""The platform's pile-facing processes on the simulated store: the gateway and the watchdog.

The gateway turns pile messages into the ledger commands the pile link makes (``pile_link.handlers``:
``acknowledge_start``, ``mark_charging`` then readings, ``settle`` then 0x40, a closed connection
recorded offline with its sessions' offline deadlines) and sends piles what they are owed, decided
by ``pile_link.owed.owed_for_session`` (at login, and when it sees new session events: the NATS
path). Its connections and what it sent on them are process memory: a crash loses them (and every
pile's TCP connection).

The watchdog is ``adapters.followers.watchdog``'s decisions (``followups_of``, ``expire_due``,
``apply_followup``) and ``adapters.followers.orphan_holds``' (``check_of``, ``release_if_orphaned``) on
in-memory tables kept in the store: a follower of the Sessions and Wallets logs with its own
positions (the index of open sessions, the wallet follow-ups, the orphan-hold checks).
"""

from __future__ import annotations

from typing import Any

from adapters.followers.orphan_holds import GRACE as ORPHAN_GRACE
from adapters.followers.orphan_holds import OrphanHolds, release_if_orphaned
from domain.errors import DomainError
from domain.ledger import Ledger, PileGun
from domain.session import ChargingSession
from pile_link.owed import owed_for_session
from adapters.followers.watchdog import CLOSING, apply_followup, expire_due, followups_of
from pile_link.ykc import RemoteStart, RemoteStop
from simulation.piles import Message, Network
from simulation.world import World


def catch_up(world: World, ledger: Ledger) -> None:
    """The watchdog's followers: open sessions, wallet follow-ups, orphan-hold checks, from the logs."""
    store = world.store
    for name, app in (("sessions", ledger.sessions), ("wallets", ledger.wallets)):
        position = store.positions.get(name, 0)
        for notification in app.recorder.select_notifications(start=position + 1, limit=10_000):
            position = notification.id
            event = app.mapper.to_domain_event(notification)
            kind = type(event).__name__
            if name == "sessions" and not isinstance(event, ChargingSession.Event):
                continue  # another aggregate of the Sessions log (a roaming charge): no deadline, no follow-up
            if name == "wallets":
                if kind == "HoldPlaced":
                    for trade_no, wallet_id, _ in OrphanHolds.check_of(event):  # due on the simulated clock
                        store.orphan_checks.setdefault(trade_no, (wallet_id, world.now + ORPHAN_GRACE))
                continue
            if kind == "Opened":
                store.open_sessions[event.trade_no] = None
            elif kind in CLOSING:
                session = ledger.sessions.get(event.originator_id, ChargingSession, "session", fresh=False,
                                              copy=False)
                store.open_sessions.pop(session.trade_no, None)
                for key, trade_no, wallet_id, command, arguments, due in followups_of(session, kind, event):
                    store.followups.setdefault(key, (trade_no, wallet_id, command, arguments, due))
        store.positions[name] = position


def session_of(ledger: Ledger, trade_no: str) -> ChargingSession:
    return ledger.sessions.get(ChargingSession.create_id(trade_no), ChargingSession, "session", fresh=True,
                               copy=False)


class Watchdog:
    def __init__(self, world: World) -> None:
        self.world = world

    def sweep(self) -> None:
        world = self.world
        ledger = world.ledger("watchdog")
        now = world.now
        catch_up(world, ledger)
        due = [t for t in world.store.open_sessions
               if (d := session_of(ledger, t).deadline) is not None and d <= now]
        closed = expire_due(ledger, due, now, lambda trade_no, deadline: None)
        world.faults["watchdog_expired"] += len(closed)
        if closed:
            catch_up(world, ledger)
        for key, (trade_no, wallet_id, command, arguments, when) in list(world.store.followups.items()):
            if when > now:
                continue
            try:
                if apply_followup(ledger, key, trade_no, wallet_id, command, arguments):
                    world.faults["followup_applied"] += 1
                    world.log(f"followup {key} applied")
            except DomainError as error:
                world.log(f"followup {key} refused: {error.code}")
                continue
            del world.store.followups[key]
        for trade_no, (wallet_id, when) in list(world.store.orphan_checks.items()):
            if when <= now:
                if release_if_orphaned(ledger, trade_no, wallet_id):
                    world.log(f"orphan hold {trade_no} released")
                del world.store.orphan_checks[trade_no]


class Gateway:
    """The gateway process's memory: which connection holds each pile, and what it sent on it."""

    def __init__(self, world: World, network: Network) -> None:
        self.world = world
        self.network = network
        self.reset()

    def reset(self) -> None:
        self.links: dict[str, int] = {}  # pile -> connection
        self.sent: dict[tuple[int, str, str, str], None] = {}  # (conn, pile, trade_no, kind)
        self.charging: dict[tuple[str, int, str], None] = {}  # (pile, conn, trade_no) marked charging here
        self.guns: dict[tuple[str, int], str] = {}  # what each gun last reported on its connection

    @property
    def ledger(self) -> Ledger:
        return self.world.ledger("gateway")

    def send(self, kind: str, pile_no: str, **body: Any) -> None:
        self.network.send(Message(kind, pile_no, pile_no, self.links[pile_no], body))

    def receive(self, message: Message) -> None:
        pile_no, conn, body, now = message.pile_no, message.conn, message.body, self.world.now
        ledger = self.ledger
        if message.kind == "login":
            ledger.pile_connected(pile_no, now, "sim-gateway", 0x15, "sim")
            self.links[pile_no] = conn
            self.deliver_owed(pile_no, again=True)
            return
        if message.kind == "closed":
            if self.links.get(pile_no) == conn:
                del self.links[pile_no]
                ledger.pile_disconnected(pile_no, now, "connection closed")
                catch_up(self.world, ledger)
                for trade_no in [t for t in self.world.store.open_sessions if t.startswith(pile_no)]:
                    ledger.session_pile_offline(trade_no, at=now)
            return
        if self.links.get(pile_no) != conn:
            return  # a frame on a connection this process does not hold (it restarted): TCP never delivers it
        sent_by = PileGun(pile_no, body["gun"])
        try:
            if message.kind == "start_reply":
                ledger.acknowledge_start(body["trade_no"], sent_by=sent_by, at=now,
                                         ok=body["ok"], reason="" if body["ok"] else "refused by pile")
            elif message.kind == "realtime":
                self.on_realtime(pile_no, conn, sent_by, body)
            elif message.kind == "record":
                self.on_record(pile_no, sent_by, body)
        except DomainError as error:
            self.world.log(f"gateway refused {message.kind} {body.get('trade_no')}: {error.code}")

    def on_realtime(self, pile_no: str, conn: int, sent_by: PileGun, body: dict[str, Any]) -> None:
        ledger, now, trade_no = self.ledger, self.world.now, body["trade_no"]
        charging = body["status"] == "charging"
        if charging and (pile_no, conn, trade_no) not in self.charging:
            ledger.mark_charging(trade_no, sent_by=sent_by, at=now)
            self.charging[(pile_no, conn, trade_no)] = None
        if self.guns.get((pile_no, sent_by.gun_no)) != body["status"]:
            ledger.report_gun(pile_no, sent_by.gun_no, body["status"], charging, {}, now)
            self.guns[(pile_no, sent_by.gun_no)] = body["status"]
        if charging:
            error = ledger.record_readings([{"trade_no": trade_no, "sent_by": sent_by, "at": now,
                                             "energy": body["energy"]}])[0]
            if error is not None:
                self.world.log(f"reading {trade_no} refused: {error.code}")  # type: ignore[attr-defined]

    def on_record(self, pile_no: str, sent_by: PileGun, body: dict[str, Any]) -> None:
        trade_no, ledger = body["trade_no"], self.ledger
        try:
            before = session_of(ledger, trade_no).state \
                if ledger.sessions.exists(ChargingSession.create_id(trade_no)) else None
            ledger.settle(trade_no, body["record"], self.world.now, pile_no=pile_no, gun_no=sent_by.gun_no)
            if before in ("abandoned", "failed"):
                self.world.faults["late_record"] += 1  # re-priced (Resettled)
                self.world.log(f"late record {trade_no} re-priced a session {before}")
        except DomainError as error:
            self.world.log(f"record {trade_no} refused: {error.code}")
        self.send("confirm", pile_no, trade_no=trade_no)

    def deliver_owed(self, pile_no: str, again: bool = False) -> None:
        """What the store says the pile is owed, each start and stop once per connection."""
        ledger, conn = self.ledger, self.links[pile_no]
        catch_up(self.world, ledger)
        for trade_no in [t for t in self.world.store.open_sessions if t.startswith(pile_no)]:
            session = session_of(ledger, trade_no)
            for frame in owed_for_session(session, self.world.now):
                kind = "start" if isinstance(frame, RemoteStart) else "stop"
                assert isinstance(frame, RemoteStart | RemoteStop)
                if (conn, pile_no, trade_no, kind) in self.sent:
                    continue
                self.sent[(conn, pile_no, trade_no, kind)] = None
                if again:
                    self.world.faults[f"owed_{kind}_sent_again"] += 1
                self.send(kind, pile_no, trade_no=trade_no, gun=session.gun_no)

    def follow(self) -> None:
        """New session events reach the gateway (NATS): send each held pile what it is owed now."""
        for pile_no in list(self.links):
            self.deliver_owed(pile_no)
