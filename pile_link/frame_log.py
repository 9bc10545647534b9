"""The frame log: every frame in and out of a logged-in pile, kept in Postgres for diagnostics.

The console's pile page shows a pile's newest frames, decoded (docs/console.md); this is where they
come from. A :class:`~pile_link.link.PileLink` hands each frame to :class:`FrameLog` as it reads or
writes it (after login; a connection that never logs in records nothing), and the log queues it as a
tuple: no I/O, no await, nothing that can hold the link back. Heartbeats (0x03, and the 0x04
answering each) are not stored: the log counts each pile's 0x03s and keeps the last one's time.

The queue is a :class:`~pile_link.write_behind.WriteBehind` of its own, flushed every two seconds (or at
``max_batch`` frames) by a thread of its own on a connection of its own, so a slow or failing write
never takes a worker or a connection the ledger's calls need. Each batch is one statement
(:mod:`adapters.postgres.pile_frames`: the heartbeat counts, the frames' numbers and the ring of the
newest 200 per pile, in one round trip).

**This is diagnostics, not the ledger.** While Postgres is away the queue keeps at most
``max_pending`` frames and drops the oldest beyond that (counted in ``stats["pile_frames_shed"]``);
frames queued when the gateway stops during an outage are lost with the process. Nothing the ledger
needs passes through here, and the link never waits for it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from adapters.postgres import pile_frames
from adapters.postgres.env import create_tables
from pile_link.write_behind import WriteBehind
from pile_link.ykc import DecodeError, Frame

log = logging.getLogger("chargeledger.pile_link")

HEARTBEAT, HEARTBEAT_ACK = 0x03, 0x04
MAX_PENDING = 20_000  # frames queued through a database outage; beyond, the oldest are dropped
HEADER = 6  # 68 | len | seq(2) | enc | type: what precedes the payload
BEATS = "heartbeats"  # the queue item that makes its batch write the heartbeat counts


class FrameLog:
    """Queues a gateway's frames and writes them in batches (one statement a batch) to ``pile_frames``."""

    def __init__(self, gateway: Any, database_url: str, *, interval: float = 2.0, max_batch: int = 10_000,
                 max_pending: int = MAX_PENDING) -> None:
        self.database_url = database_url
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frames")
        self.closed = False
        self.conn: psycopg.Connection[Any] | None = None
        self.beats: dict[str, list[Any]] = {}  # pile -> [heartbeats, the last one's time] since the last flush
        self.unwritten: dict[str, list[Any]] = {}  # the same, gathered and not yet written
        self.queue = WriteBehind(gateway, "pile_frames", self.write, interval=interval, max_batch=max_batch,
                                 reachable=gateway.database_reachable, max_pending=max_pending, run=self.run,
                                 gather=self.gather)
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
            create_tables(conn, *pile_frames.SCHEMA)  # under the schema lock, as every role's tables

    # ---- what a link calls (on the event loop; each only appends) ----------------------------------------
    def frame_in(self, pile_no: str, at: float, frame: Frame, refused: bool) -> None:
        """A frame the pile sent, read at ``at`` (``time.time()``); ``refused`` at the boundary (a refused
        heartbeat, naming another pile, is kept as a frame)."""
        if frame.frame_type == HEARTBEAT and not refused:
            self.heartbeat(pile_no, at)
        else:
            self.queue.add((pile_no, at, False, frame.frame_type, frame.seq, frame.payload, refused, None))

    def frame_out(self, pile_no: str, data: bytes) -> None:
        """A frame written to the pile (``data``: its wire bytes, as encoded)."""
        if data[5] != HEARTBEAT_ACK:
            self.queue.add((pile_no, time.time(), True, data[5], data[2:4], data[HEADER:-2], False, None))

    def bad_frame(self, pile_no: str, error: DecodeError) -> None:
        """A frame whose envelope failed (a CRC neither way round, an encrypted frame): kept with the reason.
        Bytes that are no frame at all (garbage before a 0x68, a bad header) are only counted, as before."""
        raw = error.raw
        if len(raw) >= HEADER + 2 and raw[0] == 0x68:
            self.queue.add((pile_no, time.time(), False, raw[5], raw[2:4], raw[HEADER:-2], False,
                            f"{error.reason} [{error.code}]"))

    def heartbeat(self, pile_no: str, at: float) -> None:
        beat = self.beats.get(pile_no)
        if beat is None:
            self.beats[pile_no] = [1, at]
        else:
            beat[0] += 1
            beat[1] = at

    # ---- the write-behind's side ---------------------------------------------------------------------------
    def gather(self) -> list[Any]:
        """At each flush (no write in flight): the heartbeats counted since the last one join those not yet
        written, and the queue gets one marker (:data:`BEATS`) that makes its batch write them. The counts
        are never queue items, so a queue shedding its oldest in an outage loses frames, never counts."""
        for pile_no, (count, at) in self.beats.items():
            kept = self.unwritten.setdefault(pile_no, [0, at])
            kept[0] += count
            kept[1] = max(kept[1], at)
        self.beats = {}
        return [BEATS] if self.unwritten and BEATS not in self.queue.pending else []

    def run(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))

    def write(self, batch: list[Any]) -> list[None]:
        """One batch, one statement (in the frame log's thread, never while ``gather`` runs)."""
        with_beats = BEATS in batch
        frames = [item for item in batch if item is not BEATS] if with_beats else batch
        beats = {pile_no: (count, at) for pile_no, (count, at) in self.unwritten.items()} if with_beats else {}
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
            pile_frames.write(self.conn, frames, beats)
        except psycopg.Error:
            self.drop_connection()
            raise
        if with_beats:
            self.unwritten = {}
        return [None] * len(batch)

    def drop_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
            self.conn = None

    async def close(self) -> None:
        """After the last flush: the log's thread and connection go (once: a gateway may be stopped twice)."""
        if self.closed:
            return
        self.closed = True
        await self.run(self.drop_connection)
        self.executor.shutdown(wait=True)
