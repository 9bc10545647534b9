"""A scripted YKC pile for gateway tests: sends exactly the frames a test says, and waits for replies.

Deliberately dumb (no behaviour of its own) so a test controls every byte; the behaving pile is the
simulator in ``pile_link.simulator``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, TypeVar

from pile_link.ykc import (
    DecodeError,
    FrameDecoder,
    Login,
    LoginAck,
    Message,
    SequenceCounter,
    TierUsage,
    TransactionRecord,
    decode_message,
    encode_message,
    encode_reply,
)
from pile_link.ykc.realtime import RealtimeData

M = TypeVar("M", bound=Message)


class ScriptedPile:
    def __init__(self, pile_no: str, *, crc_order: str = "le", gun_count: int = 2) -> None:
        self.pile_no = pile_no
        self.crc_order = crc_order
        self.gun_count = gun_count
        self.seq = SequenceCounter()
        self.decoder = FrameDecoder(lenient_crc=True)
        self.received: list[tuple[Any, Message]] = []  # (frame, message) not yet taken by expect()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.crc_orders_seen: set[str] = set()

    async def connect(self, port: int, host: str = "127.0.0.1") -> ScriptedPile:
        self.reader, self.writer = await asyncio.open_connection(host, port)
        self.decoder = FrameDecoder(lenient_crc=True)
        return self

    async def login(self, port: int, *, expect_ok: bool = True) -> LoginAck:
        await self.connect(port)
        self.send(Login(self.pile_no, 0, self.gun_count, 0x10, "V4.1.50", 0, "0" * 20, 4))
        ack = await self.expect(LoginAck)
        assert (ack.result == 0) is expect_ok, ack
        return ack

    def send(self, msg: Message) -> None:
        assert self.writer is not None
        self.writer.write(encode_message(msg, self.seq.next(), self.crc_order))  # type: ignore[arg-type]

    def send_raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    def answer(self, request_frame: Any, msg: Message) -> None:
        assert self.writer is not None
        data = encode_reply(request_frame, msg)
        if self.crc_order == "be":
            data = data[:-2] + data[-2:][::-1]
        self.writer.write(data)

    async def expect(self, kind: type[M], timeout: float = 10.0) -> M:
        return (await self.expect_frame(kind, timeout))[1]

    async def expect_frame(self, kind: type[M], timeout: float = 10.0) -> tuple[Any, M]:
        """The next frame of this type (earlier ones of other types stay queued)."""
        async def wait() -> tuple[Any, M]:
            while True:
                for i, (frame, msg) in enumerate(self.received):
                    if isinstance(msg, kind):
                        del self.received[i]
                        return frame, msg
                await self._read()
        return await asyncio.wait_for(wait(), timeout)

    async def _read(self) -> None:
        assert self.reader is not None
        chunk = await self.reader.read(4096)
        if not chunk:
            raise ConnectionError("gateway closed the connection")
        for item in self.decoder.feed(chunk):
            if isinstance(item, DecodeError):
                raise AssertionError(f"gateway sent a bad frame: {item}")
            self.crc_orders_seen.add(item.crc_order)
            self.received.append((item, decode_message(item)))

    async def closed_by_peer(self, timeout: float = 10.0) -> bool:
        assert self.reader is not None
        try:
            while True:
                if not await asyncio.wait_for(self.reader.read(4096), timeout):
                    return True
        except (ConnectionError, asyncio.TimeoutError):
            return isinstance(self.reader.exception(), ConnectionError) if self.reader.exception() else False

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except ConnectionError:
                pass

    # ---- frames a pile sends -----------------------------------------------------------------------
    def realtime(self, gun_no: int, *, status: int, trade_no: str = "0" * 32, plugged: int = 1, energy: int = 0,
                 amount: int = 0, soc: int = 50, hw_faults: int = 0) -> RealtimeData:
        return RealtimeData(trade_no, self.pile_no, f"{gun_no:02d}", status, 0, plugged, 7500, 1200, 30,
                            bytes(8), soc, 25, 1, 30, energy, energy, amount, hw_faults)

    def record(self, trade_no: str, gun_no: int, tier_energy: tuple[int, int, int, int], prices: tuple[int, ...],
               start: datetime, end: datetime, stop_reason: int = 0x40) -> TransactionRecord:
        tiers = tuple(TierUsage(p, e, e, e * p // 10**5) for e, p in zip(tier_energy, prices))
        total = sum(tier_energy)
        return TransactionRecord(trade_no, self.pile_no, f"{gun_no:02d}", start, end, tiers,  # type: ignore[arg-type]
                                 1_000_000, 1_000_000 + total, total, total, sum(t.amount for t in tiers),
                                 "0" * 17, 0x01, end, stop_reason, bytes(8))


async def settlements_done(gateway: Any) -> None:
    """Wait for the records a gateway is settling: a 0x3B is settled beside its connection's read loop
    (heartbeats are answered while it waits for the database), so an answer to a later frame does not
    mean the record's settlement is done."""
    await asyncio.gather(*(task for link in list(gateway.connections) for task in list(link.settling.values())),
                         return_exceptions=True)
