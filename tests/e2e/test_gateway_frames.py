"""The gateway's frame log end to end: a scripted YKC pile logs in to a real gateway over TCP, sends frames,
and ``pile_frames`` holds them (in and out, refusals marked, bad envelopes with their reason), never a
heartbeat (counted in ``pile_frame_heads`` instead), at most the newest 200 a pile; under a database
outage the queue drops its oldest and the link goes on answering."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from adapters.postgres.pile_frames import KEPT
from domain.ledger import Ledger
from pile_link.gateway import Gateway
from pile_link.ykc import Heartbeat, HeartbeatAck, encode_frame, encode_message
from tests.e2e.gateway_harness import Clock, run
from tests.factories import build_world
from tests.ykc_pile import ScriptedPile

IDLE = 2


def rows(database_url: str, pile_no: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        return conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM pile_frames WHERE pile_no = %s ORDER BY n", (pile_no,)).fetchall()


def heads(database_url: str, pile_no: str) -> dict[str, Any] | None:
    with psycopg.connect(database_url) as conn:
        return conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM pile_frame_heads WHERE pile_no = %s", (pile_no,)).fetchone()


async def beat(pile: ScriptedPile, times: int = 1) -> None:
    """Heartbeats, each answered: every frame sent before them has been through the gateway's read loop."""
    for _ in range(times):
        pile.send(Heartbeat(pile.pile_no, "01", 0))
        await pile.expect(HeartbeatAck)


def test_a_piles_frames_in_and_out_are_kept_and_its_heartbeats_only_counted(ledger: Ledger, database_url: str,
                                                                          nats_url: str) -> None:
    world = build_world(ledger)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        stranger = ScriptedPile("99999999999999")
        await stranger.login(gateway.port, expect_ok=False)  # refused: not a logged-in pile, nothing kept
        pile = ScriptedPile(world.pile_no)
        await pile.login(gateway.port)
        await beat(pile, 3)
        pile.send(pile.realtime(1, status=IDLE, plugged=0))
        pile.send(pile.realtime(1, status=IDLE, plugged=0, trade_no="3201060001" + "0" * 22))  # another pile's
        pile.send_raw(encode_frame(0xF1, b"\x01\x02\x03", b"\x00\x77"))  # whole, but no such message
        bad_crc = bytearray(encode_message(pile.realtime(2, status=IDLE, plugged=0), b"\x00\x78"))
        bad_crc[-1] ^= 0xFF
        pile.send_raw(bytes(bad_crc))
        await beat(pile)
        await gateway.frames.queue.flush()

    run(ledger, database_url, nats_url, scenario)
    kept = rows(database_url, world.pile_no)
    kinds = [(r["frame_type"], r["outgoing"]) for r in kept]
    assert not {0x03, 0x04} & {t for t, _ in kinds}  # no heartbeat, no answer to one
    in_time = sorted(kept, key=lambda r: (r["at"], r["n"]))  # as the page shows them (newest last here)
    assert [(r["frame_type"], r["outgoing"]) for r in in_time[:2]] == [(0x01, False), (0x02, True)]
    assert kinds[0] == (0x02, True)  # queued once its handler accepted the login, stamped when it was read
    assert (0x56, True) in kinds  # the clock set after login
    realtime = [r for r in kept if r["frame_type"] == 0x13 and r["error"] is None]
    assert [r["refused"] for r in realtime] == [False, True]
    assert bytes(realtime[0]["payload"]) == ScriptedPile(world.pile_no).realtime(1, status=IDLE, plugged=0).encode()
    unknown = next(r for r in kept if r["frame_type"] == 0xF1)
    assert (bytes(unknown["seq"]), bytes(unknown["payload"]), unknown["error"]) == (b"\x00\x77", b"\x01\x02\x03", None)
    crc = next(r for r in kept if r["error"] is not None)
    assert (crc["frame_type"], bytes(crc["seq"]), "[crc]" in crc["error"]) == (0x13, b"\x00\x78", True)
    head = heads(database_url, world.pile_no)
    assert head is not None and (head["heartbeats"], head["frames"]) == (4, len(kept))
    assert head["last_heartbeat_at"] is not None and head["last_frame_at"] is not None
    assert rows(database_url, "99999999999999") == [] and heads(database_url, "99999999999999") is None


def test_only_the_newest_200_frames_of_a_pile_are_kept(ledger: Ledger, database_url: str, nats_url: str) -> None:
    world = build_world(ledger)
    sent: list[bytes] = []

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile = ScriptedPile(world.pile_no)
        await pile.login(gateway.port)
        for batch in (150, 260):  # the second batch alone is more than a pile keeps
            for i in range(batch):
                frame = pile.realtime(1, status=IDLE, plugged=0, energy=len(sent) + 1)
                sent.append(frame.encode())
                pile.send(frame)
            await beat(pile)
            await gateway.frames.queue.flush()

    run(ledger, database_url, nats_url, scenario)
    kept = rows(database_url, world.pile_no)
    head = heads(database_url, world.pile_no)
    assert head is not None and len(kept) == KEPT
    assert [r["n"] for r in kept] == list(range(head["frames"] - KEPT, head["frames"]))
    sent_by_pile = [bytes(r["payload"]) for r in kept if not r["outgoing"]]  # (what the gateway sent meanwhile,
    assert sent_by_pile == sent[-len(sent_by_pile):] and len(sent_by_pile) > KEPT - 10  # owed at login, is kept too)


def test_under_a_database_outage_the_frame_log_drops_its_oldest_and_the_link_goes_on(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    world = build_world(ledger)
    sent: list[bytes] = []

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile = ScriptedPile(world.pile_no)
        await pile.login(gateway.port)
        await gateway.frames.queue.flush()
        queue = gateway.frames.queue
        write, reachable = queue.write, queue.reachable

        def away(batch: list[Any]) -> list[None]:
            raise psycopg.OperationalError("the database is away (test)")

        queue.write, queue.reachable, queue.max_pending = away, (lambda: False), 50
        for i in range(120):
            frame = pile.realtime(1, status=IDLE, plugged=0, energy=i + 1)
            sent.append(frame.encode())
            pile.send(frame)
        await beat(pile, 2)  # answered at once: the link never waits for the frame log
        assert len(queue.pending) <= 51 and gateway.stats["pile_frames_shed"] >= 70
        queue.write, queue.reachable = write, reachable
        await queue.flush()

    run(ledger, database_url, nats_url, scenario)
    realtime = [bytes(r["payload"]) for r in rows(database_url, world.pile_no) if r["frame_type"] == 0x13]
    assert realtime == sent[-len(realtime):] and 40 <= len(realtime) <= 50  # the newest, none older
    head = heads(database_url, world.pile_no)
    assert head is not None and head["heartbeats"] == 2  # counts are kept apart from the queue: never shed
