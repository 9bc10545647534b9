"""Load mode: thousands of pile connections that only log in and keep talking, with reply latency.

For ``bench/pile_link.py`` and for an operator sizing a gateway. Each connection logs in (0x01),
then sends a heartbeat (0x03) per gun every ``heartbeat_interval`` and an idle realtime frame
(0x13) per gun every ``realtime_interval``, spread evenly over the interval so the load is flat.
Latency is measured per frame that has a reply, from the moment the frame is written to the
moment its reply is decoded: login (0x01 → 0x02) and heartbeat (0x03 → 0x04, matched by the
echoed sequence number). 0x13 has no reply in YKC, so it is only counted.

Built so one asyncio process holds 10,000 connections: a connection is an ``asyncio.Protocol``
with ``__slots__`` (no task, no StreamReader per connection); one scheduler task sends every
periodic frame from a heap; frames are pre-encoded per connection except for sequence and CRC.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import resource
from array import array
from dataclasses import dataclass, field

from pile_link.simulator.fleet import pile_numbers
from pile_link.ykc import DecodeError, FrameDecoder, Heartbeat, Login, RealtimeData, encode_frame
from pile_link.ykc.frame import CrcOrder

LOGIN_ACK, HEARTBEAT_ACK, TIME_SYNC, TIME_SYNC_ACK = 0x02, 0x04, 0x56, 0x55


@dataclass(frozen=True)
class LoadConfig:
    connections: int = 1000
    guns: int = 1
    heartbeat_interval: float = 10.0  # real s between heartbeats of one gun (the protocol's 10 s)
    realtime_interval: float = 15.0  # real s between 0x13 of one gun; 0 = none
    duration: float = 60.0  # real s of steady load after the last connection logged in
    connect_rate: float = 500.0  # new connections per second during ramp-up
    connect_concurrency: int = 256  # connects in flight at once
    reply_timeout: float = 10.0  # real s to wait for a login answer
    first_pile: str = "98000000000001"
    quirky: float = 0.0  # fraction of connections sending high-byte-first CRCs (seeded)
    realtime_share: float = 1.0  # fraction of connections sending realtime frames (seeded)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.connections < 1 or self.guns < 1 or self.heartbeat_interval <= 0 or self.connect_rate <= 0:
            raise ValueError("connections, guns, heartbeat_interval and connect_rate must be positive")

    @property
    def frames_per_second(self) -> float:
        """The steady uplink rate this configuration offers the server."""
        realtime = self.realtime_share / self.realtime_interval if self.realtime_interval else 0.0
        per_gun = 1.0 / self.heartbeat_interval + realtime
        return self.connections * self.guns * per_gun


class Latency:
    """Reply latencies in seconds, kept compactly (8 bytes each) for exact percentiles."""

    def __init__(self) -> None:
        self.samples = array("d")

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    @property
    def count(self) -> int:
        return len(self.samples)

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile; NaN when empty."""
        if not self.samples:
            return math.nan
        ordered = sorted(self.samples)
        rank = max(1, math.ceil(p / 100.0 * len(ordered)))
        return ordered[rank - 1]

    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else math.nan

    def describe(self) -> str:
        if not self.samples:
            return "no samples"
        ms = lambda s: f"{s * 1000:.2f}"  # noqa: E731
        return (f"n={self.count} mean={ms(self.mean())} p50={ms(self.percentile(50))} "
                f"p95={ms(self.percentile(95))} p99={ms(self.percentile(99))} max={ms(max(self.samples))} ms")


@dataclass
class LoadReport:
    connections: int
    logged_in: int = 0
    login_failed: int = 0
    connect_failed: int = 0
    dropped: int = 0  # connections the server closed after login
    heartbeats_sent: int = 0
    realtime_sent: int = 0
    unanswered: int = 0  # heartbeats without a 0x04 when the run ended
    frame_errors: int = 0
    ramp_s: float = 0.0
    steady_s: float = 0.0
    login: Latency = field(default_factory=Latency)
    heartbeat: Latency = field(default_factory=Latency)
    heartbeat_at: array[float] = field(default_factory=lambda: array("d"))  # loop time each answer was read

    def lines(self) -> list[str]:
        sent = self.heartbeats_sent + self.realtime_sent
        rate = sent / (self.ramp_s + self.steady_s) if self.ramp_s + self.steady_s else 0.0
        return [
            f"connections   {self.logged_in}/{self.connections} logged in, {self.login_failed} refused, "
            f"{self.connect_failed} could not connect, {self.dropped} dropped by the server",
            f"ramp-up       {self.ramp_s:.2f} s; steady {self.steady_s:.2f} s",
            f"frames sent   {self.heartbeats_sent} heartbeats + {self.realtime_sent} realtime "
            f"= {rate:.0f} frames/s; {self.unanswered} heartbeats unanswered; {self.frame_errors} bad frames",
            f"login   0x01→0x02  {self.login.describe()}",
            f"heartbeat 0x03→0x04  {self.heartbeat.describe()}",
        ]


class _Conn(asyncio.Protocol):
    """One pile connection in load mode: a few fields, no task."""

    __slots__ = ("fleet", "index", "crc", "login", "heartbeats", "realtime", "transport", "decoder", "seq",
                 "pending", "login_sent", "logged_in", "settled", "closed")

    def __init__(self, fleet: LoadFleet, index: int, pile_no: str, crc: CrcOrder, guns: int) -> None:
        self.fleet = fleet
        self.index = index
        self.crc = crc
        self.login = Login(pile_no, 0, guns, 0x10, "SIM-LOAD", 1, "0", 4).encode()
        gun_nos = [f"{g + 1:02d}" for g in range(guns)]
        self.heartbeats = [Heartbeat(pile_no, g, 0).encode() for g in gun_nos]
        self.realtime = [
            RealtimeData("0" * 32, pile_no, g, 2, 1, 0, 0, 0, -50, bytes(8), 0, -50, 0, 0, 0, 0, 0, 0).encode()
            for g in gun_nos
        ]
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(lenient_crc=True)
        self.seq = 0
        self.pending: dict[bytes, float] = {}
        self.login_sent = 0.0
        self.logged_in = False
        self.settled = False  # the login came to an end: accepted, refused or never answered
        self.closed = False

    def send(self, frame_type: int, payload: bytes, seq: bytes | None = None) -> bytes:
        if seq is None:
            seq = self.seq.to_bytes(2, "big")
            self.seq = (self.seq + 1) & 0xFFFF
        assert self.transport is not None
        self.transport.write(encode_frame(frame_type, payload, seq, self.crc))
        return seq

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.login_sent = self.fleet.loop.time()
        self.send(0x01, self.login)

    def data_received(self, data: bytes) -> None:
        now = self.fleet.loop.time()
        report = self.fleet.report
        for item in self.decoder.feed(data):
            if isinstance(item, DecodeError):
                report.frame_errors += 1
                continue
            kind = item.frame_type
            if kind == HEARTBEAT_ACK:
                sent = self.pending.pop(item.seq, None)
                if sent is not None:
                    report.heartbeat.add(now - sent)
                    report.heartbeat_at.append(now)
            elif kind == LOGIN_ACK and not self.logged_in:
                if len(item.payload) == 8 and item.payload[7] == 0:
                    report.login.add(now - self.login_sent)
                    self.logged_in = True
                    self.fleet.logged_in(self)
                else:
                    report.login_failed += 1
                    self.fleet.login_done(self)
                    self.close()
            elif kind == TIME_SYNC:
                self.send(TIME_SYNC_ACK, item.payload, item.seq)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed and self.logged_in:
            self.fleet.report.dropped += 1
        self.closed = True
        if not self.logged_in:
            self.fleet.login_done(self)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards ``wanted`` (never above the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class LoadFleet:
    """Run a load: ramp up ``connections``, hold them for ``duration``, close, report."""

    def __init__(self, host: str, port: int, config: LoadConfig) -> None:
        self.host, self.port, self.config = host, port, config
        self.report = LoadReport(config.connections)
        self.conns: list[_Conn] = []
        self._heap: list[tuple[float, int, int, int]] = []  # (due, tiebreak, conn index, slot)
        self._tiebreak = 0
        self._rng = random.Random(f"{config.seed}/load")
        self._pending_logins = 0
        self._all_done = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop

    def logged_in(self, conn: _Conn) -> None:
        self.report.logged_in += 1
        now = self.loop.time()
        cfg = self.config
        for gun in range(cfg.guns):  # first frames spread uniformly over one interval
            self._push(now + self._rng.uniform(0, cfg.heartbeat_interval), conn.index, gun)
            if cfg.realtime_interval and (cfg.realtime_share >= 1.0 or self._rng.random() < cfg.realtime_share):
                self._push(now + self._rng.uniform(0, cfg.realtime_interval), conn.index, cfg.guns + gun)
        self.login_done(conn)

    def login_done(self, conn: _Conn) -> None:
        if conn.settled:
            return
        conn.settled = True
        self._pending_logins -= 1
        if self._pending_logins <= 0:
            self._all_done.set()

    def _push(self, due: float, index: int, slot: int) -> None:
        self._tiebreak += 1
        heapq.heappush(self._heap, (due, self._tiebreak, index, slot))

    async def _connect(self, index: int, pile_no: str, crc: CrcOrder, limit: asyncio.Semaphore) -> None:
        async with limit:
            conn = _Conn(self, index, pile_no, crc, self.config.guns)
            self.conns[index] = conn
            try:
                await asyncio.wait_for(self.loop.create_connection(lambda: conn, self.host, self.port),
                                       self.config.reply_timeout)
            except (OSError, TimeoutError):
                self.report.connect_failed += 1
                conn.closed = True
                self.login_done(conn)

    async def _schedule(self) -> None:
        cfg = self.config
        heap, conns, report = self._heap, self.conns, self.report
        while True:
            now = self.loop.time()
            while heap and heap[0][0] <= now:
                due, _, index, slot = heapq.heappop(heap)
                conn = conns[index]
                if conn.closed:
                    continue
                if slot < cfg.guns:
                    seq = conn.send(0x03, conn.heartbeats[slot])
                    conn.pending[seq] = self.loop.time()
                    report.heartbeats_sent += 1
                    self._push(due + cfg.heartbeat_interval, index, slot)
                else:
                    conn.send(0x13, conn.realtime[slot - cfg.guns])
                    report.realtime_sent += 1
                    self._push(due + cfg.realtime_interval, index, slot)
            delay = heap[0][0] - self.loop.time() if heap else 0.05
            await asyncio.sleep(min(max(delay, 0.0), 0.05))

    async def run(self) -> LoadReport:
        cfg = self.config
        self.loop = asyncio.get_running_loop()
        raise_fd_limit(cfg.connections + 256)
        numbers = pile_numbers(cfg.first_pile, cfg.connections)
        crc_rng = random.Random(f"{cfg.seed}/quirky")
        orders: list[CrcOrder] = ["be" if crc_rng.random() < cfg.quirky else "le" for _ in numbers]
        self.conns = [None] * cfg.connections  # type: ignore[list-item]
        self._pending_logins = cfg.connections
        scheduler = asyncio.create_task(self._schedule())
        limit = asyncio.Semaphore(cfg.connect_concurrency)
        started = self.loop.time()
        connects = []
        batch = max(1, int(cfg.connect_rate / 20))  # pace in 50 ms batches
        try:
            for i, (pile_no, crc) in enumerate(zip(numbers, orders, strict=True)):
                connects.append(asyncio.create_task(self._connect(i, pile_no, crc, limit)))
                if (i + 1) % batch == 0:
                    await asyncio.sleep(batch / cfg.connect_rate)
            await asyncio.gather(*connects)
            try:
                await asyncio.wait_for(self._all_done.wait(), cfg.reply_timeout)
            except TimeoutError:
                pass  # logins still unanswered are reported as missing
            ramped = self.loop.time()
            self.report.ramp_s = ramped - started
            await asyncio.sleep(cfg.duration)
            self.report.steady_s = self.loop.time() - ramped
        finally:
            scheduler.cancel()
            for conn in self.conns:
                if conn is not None:
                    self.report.unanswered += len(conn.pending)
                    conn.close()
            await asyncio.sleep(0)  # let the transports close
        return self.report
