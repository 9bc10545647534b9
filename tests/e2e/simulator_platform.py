"""A small YKC platform written here with our codec, for the pile simulator's tests over real TCP.

The platform (``Platform``) answers login, heartbeats and the billing model, authorises card
starts, confirms transaction records, and lets a test send 0x34/0x36/0x12/0x56/0x58. It checks
every frame's CRC strictly unless the pile is expected to be quirky, and keeps what it received.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from pile_link.simulator import PileConfig
from pile_link.ykc import (
    BillingModelReply,
    BillingModelRequest,
    BillingModelVerify,
    BillingModelVerifyAck,
    DecodeError,
    Frame,
    FrameDecoder,
    Heartbeat,
    HeartbeatAck,
    Login,
    LoginAck,
    Message,
    RemoteStart,
    SequenceCounter,
    StartAuthReply,
    StartRequest,
    TierRate,
    TimeSync,
    TransactionConfirm,
    TransactionRecord,
    decode_message,
    encode_message,
    encode_reply,
)


# sharp 1.20 + 0.60, peak 1.00 + 0.50, flat 0.70 + 0.40, valley 0.30 + 0.20 yuan/kWh
TIER_RATES = (TierRate(120000, 60000), TierRate(100000, 50000), TierRate(70000, 40000), TierRate(30000, 20000))
# valley 00-08, flat 08-10, peak 10-12, sharp 12-14, flat 14-18, peak 18-22, valley 22-24
SLOTS = (3,) * 16 + (2,) * 4 + (1,) * 4 + (0,) * 4 + (2,) * 8 + (1,) * 8 + (3,) * 4
PILE = "32010600019236"
# Link timers are real seconds. Heartbeats and record retries are fast so tests are short; how long
# the pile tolerates silence (heartbeat_misses x interval, reply_timeout) is generous, so a stalled
# event loop on a loaded machine does not drop the link in tests that are not about that.
FAST = PileConfig(heartbeat_interval=0.5, heartbeat_misses=20, reply_timeout=10.0, record_retry=0.4,
                  reconnect_delay=0.1)


def run(coro_fn: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(bounded())


class Connection:
    def __init__(self, platform: Platform, writer: asyncio.StreamWriter) -> None:
        self.platform = platform
        self.writer = writer
        self.pile_no: str | None = None
        self.seq = SequenceCounter()
        self.crc_orders: set[str] = set()

    def send(self, msg: Message) -> bytes:
        seq = self.seq.next()
        self.writer.write(encode_message(msg, seq))
        return seq

    def reply(self, frame: Frame, msg: Message) -> None:
        self.writer.write(encode_reply(frame, msg))


class Platform:
    """A YKC server good enough to exercise a pile: what the real gateway does, minus the ledger."""

    def __init__(self, *, lenient_crc: bool = False, refuse: set[str] | None = None) -> None:
        self.lenient_crc = lenient_crc
        self.refuse = refuse or set()
        self.model = BillingModelReply(PILE, "0001", TIER_RATES, 0, SLOTS)
        self.received: list[tuple[str | None, Frame, Message]] = []
        self.errors: list[DecodeError] = []
        self.connections: dict[str, Connection] = {}
        self.records: dict[str, list[TransactionRecord]] = defaultdict(list)
        self.drop_confirms = 0  # ignore this many 0x3B before confirming (to see the pile retry)
        self.answer_heartbeats = True
        self.card_balance_fen: dict[bytes, int] = {}
        self.logins = 0
        self.changed = asyncio.Condition()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Platform:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in list(self.connections.values()):
            conn.writer.close()

    def of(self, cls: type[Message], pile_no: str | None = None) -> list[Message]:
        return [m for p, _, m in self.received if isinstance(m, cls) and (pile_no is None or p == pile_no)]

    async def wait(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        async def until() -> Any:
            async with self.changed:
                while not (result := predicate()):
                    await self.changed.wait()
                return result

        return await asyncio.wait_for(until(), timeout)

    def kick(self, pile_no: str) -> None:
        self.connections[pile_no].writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, writer)
        decoder = FrameDecoder(lenient_crc=self.lenient_crc)
        try:
            while chunk := await reader.read(4096):
                for item in decoder.feed(chunk):
                    if isinstance(item, DecodeError):
                        self.errors.append(item)
                        continue
                    msg = decode_message(item)
                    conn.crc_orders.add(item.crc_order)
                    self.received.append((conn.pile_no, item, msg))
                    self._handle(conn, item, msg)
                    async with self.changed:
                        self.changed.notify_all()
        except ConnectionError:
            pass
        finally:
            writer.close()
            if conn.pile_no and self.connections.get(conn.pile_no) is conn:
                del self.connections[conn.pile_no]
            async with self.changed:
                self.changed.notify_all()

    def _handle(self, conn: Connection, frame: Frame, msg: Message) -> None:
        if isinstance(msg, Login):
            self.logins += 1
            ok = msg.pile_no not in self.refuse
            conn.reply(frame, LoginAck(msg.pile_no, 0 if ok else 1))
            if ok:
                conn.pile_no = msg.pile_no
                self.connections[msg.pile_no] = conn
            self.received[-1] = (msg.pile_no, frame, msg)
        elif isinstance(msg, Heartbeat) and self.answer_heartbeats:
            conn.reply(frame, HeartbeatAck(msg.pile_no, msg.gun_no))
        elif isinstance(msg, BillingModelVerify):
            conn.reply(frame, BillingModelVerifyAck(msg.pile_no, msg.model_no, 0 if msg.model_no == self.model.model_no else 1))
        elif isinstance(msg, BillingModelRequest):
            m = self.model
            conn.reply(frame, BillingModelReply(msg.pile_no, m.model_no, m.tiers, m.loss_ratio, m.slots))
        elif isinstance(msg, TransactionRecord):
            self.records[msg.trade_no].append(msg)
            if self.drop_confirms > 0:
                self.drop_confirms -= 1
            else:
                conn.reply(frame, TransactionConfirm(msg.trade_no, 0))
        elif isinstance(msg, StartRequest):
            balance = self.card_balance_fen.get(msg.card_no)
            trade = f"{msg.pile_no}{msg.gun_no}240601120000{len(self.records) + 1:04d}"
            conn.reply(frame, StartAuthReply(trade, msg.pile_no, msg.gun_no, "1000000000000573",
                                             balance or 0, 1 if balance else 0, 0 if balance else 1))

    async def remote_start(self, pile_no: str, gun: str, trade_no: str, balance_fen: int) -> bytes:
        return self.connections[pile_no].send(
            RemoteStart(trade_no, pile_no, gun, "1000000000000573", bytes(8), balance_fen))

    async def remote_start_at(self, at: datetime, pile_no: str, gun: str, trade_no: str, balance_fen: int) -> bytes:
        """Set the pile's clock to ``at`` (0x56), then start (0x34), in one write: the charge starts at
        ``at`` in simulated time however long the login took in real time (the sim clock runs from the
        first connect, so at x600 a one-second stall would otherwise move the start by ten minutes)."""
        self.connections[pile_no].send(TimeSync(pile_no, at))
        return await self.remote_start(pile_no, gun, trade_no, balance_fen)


def trade(n: int, gun: str = "01", pile: str = PILE) -> str:
    return f"{pile}{gun}240601120000{n:04d}"
