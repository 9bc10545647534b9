"""Simulated piles and the network between them and the gateway.

A pile is outside the platform: it survives every platform crash. Each gun charges a session it was
told to start (0x34) until the car is full or it is told to stop (0x36), meters energy into the tier
in force at each tick (the station's tariff slots, on the simulated clock), and then keeps its
transaction record (0x3B) and sends it again until the platform confirms it (0x40), across
reconnections, as a YKC pile does. What it recorded is kept for the reference pricing at the end.

The network carries messages per connection. A message may be delivered late (any in-flight message
may be taken next), twice, or never (the schedule decides: :mod:`simulation.schedule`); a message
lost on a live TCP connection means the connection broke, so a loss also closes the connection
(the pile logs in again later, and is then sent what it is owed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from domain.session import SettlementRecord
from domain.tariff import TariffSchedule
from simulation.world import GUNS, PRICES, SLOTS, World

TZ = ZoneInfo("Asia/Shanghai")
SCHEDULE = TariffSchedule.build(PRICES, SLOTS)


@dataclass
class Message:
    kind: str  # to the gateway: login, closed, start_reply, realtime, record; to a pile: start, stop, confirm
    to: str  # "gateway" or a pile number
    pile_no: str
    conn: int
    body: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        fields = ",".join(f"{k}={v}" for k, v in self.body.items() if k != "record")
        return f"{self.kind}>{self.to}#{self.conn}({fields})"


class Network:
    def __init__(self) -> None:
        self.in_flight: list[Message] = []

    def send(self, message: Message) -> None:
        self.in_flight.append(message)

    def take(self, index: int) -> Message:
        return self.in_flight.pop(index)

    def drop_connection(self, pile_no: str, conn: int) -> int:
        """A closed TCP connection: what was in flight on it is gone (but the gateway's notice of it)."""
        kept = [m for m in self.in_flight if m.pile_no != pile_no or m.conn != conn or m.kind == "closed"]
        dropped = len(self.in_flight) - len(kept)
        self.in_flight = kept
        return dropped


@dataclass
class Gun:
    no: int
    trade_no: str | None = None
    energy: int = 0
    tiers: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    target: int = 0
    started_at: datetime | None = None


class Pile:
    def __init__(self, pile_no: str, world: World, network: Network) -> None:
        self.pile_no = pile_no
        self.world = world
        self.network = network
        self.guns = {no: Gun(no) for no in GUNS}
        self.online = False
        self.conn = 0
        self.vanished = False  # gone until the drain (a pile that never comes back, as far as deadlines go)
        self.unconfirmed: dict[str, SettlementRecord] = {}  # records sent, not yet confirmed (0x40)
        self.recorded: dict[str, tuple[int, int, int, int]] = {}  # every session it charged: tier energy

    def send(self, kind: str, **body: Any) -> None:
        self.network.send(Message(kind, "gateway", self.pile_no, self.conn, body))

    # ---- the link ----------------------------------------------------------------------------------
    def login(self) -> None:
        self.conn += 1
        self.online = True
        self.send("login")
        for trade_no, record in self.unconfirmed.items():  # buffered records first, as piles do
            self.send("record", trade_no=trade_no, gun=int(trade_no[14:16]), record=record)

    def disconnect(self) -> None:
        """The TCP connection breaks: in-flight frames on it are gone; the gateway notices, later."""
        self.online = False
        self.network.drop_connection(self.pile_no, self.conn)
        self.network.send(Message("closed", "gateway", self.pile_no, self.conn))

    # ---- frames from the platform --------------------------------------------------------------------
    def receive(self, message: Message) -> None:
        body = message.body
        if message.conn != self.conn or not self.online:
            return  # a frame for a connection that is gone never reaches the pile
        if message.kind == "start":
            self.on_start(body["trade_no"], body["gun"])
        elif message.kind == "stop":
            gun = self.guns[body["gun"]]
            if gun.trade_no is not None:
                self.finish(gun, stop_reason=0x40)
        elif message.kind == "confirm":
            self.unconfirmed.pop(body["trade_no"], None)

    def on_start(self, trade_no: str, gun_no: int) -> None:
        gun = self.guns[gun_no]
        if trade_no in self.recorded:
            return  # a serial it already charged: a repeated 0x34, not a new session
        if gun.trade_no == trade_no:
            self.send("start_reply", trade_no=trade_no, gun=gun_no, ok=True)
            return
        if gun.trade_no is not None or self.world.rng.random() < 0.05:
            self.send("start_reply", trade_no=trade_no, gun=gun_no, ok=False)  # busy, or a fault
            return
        gun.trade_no, gun.energy, gun.tiers = trade_no, 0, [0, 0, 0, 0]
        gun.target = self.world.rng.randint(1, 40) * 10_000  # 1 to 40 kWh until the car is full
        gun.started_at = self.world.now
        self.recorded[trade_no] = (0, 0, 0, 0)
        self.send("start_reply", trade_no=trade_no, gun=gun_no, ok=True)

    # ---- the pile's own time -----------------------------------------------------------------------
    def tick(self) -> None:
        """Meter every charging gun and report it; send unconfirmed records again."""
        rng = self.world.rng
        for gun in self.guns.values():
            if gun.trade_no is None:
                continue
            delta = min(rng.randint(1, 30) * 1_000, gun.target - gun.energy)
            gun.tiers[SCHEDULE.tier_at(self.world.now.astimezone(TZ))] += delta
            gun.energy += delta
            self.recorded[gun.trade_no] = tuple(gun.tiers)  # type: ignore[assignment]
            if self.online:
                self.send("realtime", trade_no=gun.trade_no, gun=gun.no, status="charging", energy=gun.energy)
            if gun.energy >= gun.target:
                self.finish(gun, stop_reason=0x41)
        if self.online:
            waiting = {m.body.get("trade_no") for m in self.network.in_flight
                       if m.kind == "record" and m.pile_no == self.pile_no and m.conn == self.conn}
            for trade_no, record in self.unconfirmed.items():
                if trade_no not in waiting:
                    self.send("record", trade_no=trade_no, gun=int(trade_no[14:16]), record=record)

    def finish(self, gun: Gun, stop_reason: int) -> None:
        trade_no = gun.trade_no
        assert trade_no is not None
        record = make_record(tuple(gun.tiers), gun.started_at or self.world.now, self.world.now, stop_reason)
        self.recorded[trade_no] = record.tier_energy
        self.unconfirmed[trade_no] = record
        gun.trade_no, gun.energy, gun.tiers = None, 0, [0, 0, 0, 0]
        if self.online:
            self.send("realtime", trade_no=trade_no, gun=gun.no, status="idle", energy=0)
            self.send("record", trade_no=trade_no, gun=gun.no, record=record)

    @property
    def busy(self) -> bool:
        return any(g.trade_no for g in self.guns.values()) or bool(self.unconfirmed)


def make_record(tiers: tuple[int, ...], started: datetime, ended: datetime, stop_reason: int) -> SettlementRecord:
    """The pile's 0x3B: its tier energy, and its own amounts (0.0001 yuan, truncated as piles do)."""
    amounts = tuple(e * (p.electricity + p.service) // 10**5 for e, p in zip(tiers, SCHEDULE.prices))
    return SettlementRecord(tier_energy=tiers, pile_tier_amounts=amounts,  # type: ignore[arg-type]
                             pile_total_amount=sum(amounts), pile_total_energy=sum(tiers), meter_start=0,
                             meter_end=sum(tiers), started_at=started, ended_at=ended, stop_reason=stop_reason)
