"""The ``pile_frames`` table: each pile's newest frames, in and out, for diagnostics (not the ledger).

The YKC gateway records every frame a logged-in pile sends it and every frame it sends the pile,
except heartbeats (0x03 and their answers 0x04), which it only counts (``pile_frame_heads``: how
many, and when the last one came). It writes them in batches (``pile_link/frame_log.py``: a
:class:`~pile_link.write_behind.WriteBehind` of its own), each batch **one statement** (:data:`WRITE`,
one round trip, one implicit transaction), which

* adds each pile's frames of the batch to its count in ``pile_frame_heads`` (``frames``: how many it
  ever had recorded), and its heartbeats to ``heartbeats`` and ``last_heartbeat_at``;
* numbers the batch's frames of each pile on from that count (``n``), and writes each into the pile's
  ring of :data:`KEPT` slots (``slot = n % 200``), replacing the frame that was there.

So the table never holds more than :data:`KEPT` rows a pile, the newest, and needs no trimming:
it is bounded by construction, whatever a pile sends and however long nobody looks. (Two
gateways writing the same pile at once, during a handover, take its heads row in turn, so their
frames get distinct numbers.) The rows are updated in place; both tables' fill factors leave room
for Postgres to do that without touching the index (HOT updates). Both tables are ``UNLOGGED``: no
WAL for diagnostics, so a Postgres crash empties them (a clean restart keeps them) and streaming
replicas do not have them (the pile page reads them from the primary, as the API's pool does).

What a frame row holds: the pile, ``at`` (the gateway's wall clock when it read the frame off the
socket or wrote it), ``outgoing``, the frame type, the two sequence bytes, the payload (the bytes
between the type and the CRC, as on the wire), ``refused`` (the boundary refused it:
``pile_link/boundary.py``, or the ledger's half of it, a session of another gun) and ``error`` (the
reason when the frame failed the envelope itself, a CRC neither way round or an encrypted frame; a
payload that does not decode is stored as it came and the reader's codec says why). Readers decode
the payload with the codec (:func:`adapters.api.operator.frames.frames_page`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

KEPT = 200  # frames kept per pile: the newest

SCHEMA = (
    f"""CREATE UNLOGGED TABLE IF NOT EXISTS pile_frames (
    pile_no text NOT NULL,
    slot smallint NOT NULL CHECK (slot >= 0 AND slot < {KEPT}),  -- n mod {KEPT}: the pile's ring of frames
    n bigint NOT NULL,  -- the frame's number among all the pile's recorded frames (pile_frame_heads.frames)
    at timestamptz NOT NULL,  -- read off the socket (in) or written to it (out), the gateway's wall clock
    outgoing boolean NOT NULL,  -- false: the pile sent it; true: the platform did
    frame_type smallint NOT NULL,
    seq bytea NOT NULL,  -- the two sequence bytes as on the wire (their order is the pile's)
    payload bytea NOT NULL,  -- the bytes between the type and the CRC
    refused boolean NOT NULL DEFAULT false,  -- refused at the boundary (not this pile's, gun or session)
    error text,  -- the envelope's fault (CRC, encrypted); NULL when the frame arrived whole
    PRIMARY KEY (pile_no, slot)) WITH (fillfactor = 60)""",
    """CREATE UNLOGGED TABLE IF NOT EXISTS pile_frame_heads (
    pile_no text PRIMARY KEY,
    frames bigint NOT NULL DEFAULT 0,  -- frames ever recorded (the next frame's n)
    last_frame_at timestamptz,  -- the newest frame the pile sent
    heartbeats bigint NOT NULL DEFAULT 0,  -- heartbeats (0x03) counted, never stored
    last_heartbeat_at timestamptz) WITH (fillfactor = 70)""",
)

# One statement per batch. The batch's frames come as arrays (column by column, in the order they were
# queued: WITH ORDINALITY keeps it), its heartbeats as (pile, count, last) arrays. Each pile's heads row is
# taken once (its frames and heartbeats summed first, piles in order, so two writers lock rows in the same
# order), and its new frame count numbers the batch's frames: the last one gets frames - 1. A pile with
# more than KEPT frames in one batch writes only its newest KEPT (one slot each).
WRITE = f"""
WITH batch AS (
    SELECT * FROM unnest(%(pile)b::text[], %(at)b::float8[], %(outgoing)b::bool[], %(type)b::int2[],
                         %(seq)b::bytea[], %(payload)b::bytea[], %(refused)b::bool[], %(error)s::text[])
        WITH ORDINALITY AS b(pile_no, at, outgoing, frame_type, seq, payload, refused, error, ord)
), beats AS (
    SELECT * FROM unnest(%(beat_pile)b::text[], %(beat_count)b::int8[], %(beat_at)b::float8[])
        AS h(pile_no, beats, at)
), per_pile AS (
    SELECT pile_no, sum(frames)::bigint AS frames, max(frame_at) AS frame_at, sum(beats)::bigint AS beats,
           max(beat_at) AS beat_at
    FROM (SELECT pile_no, count(*) AS frames, max(at) FILTER (WHERE NOT outgoing) AS frame_at, 0 AS beats,
                 NULL::float8 AS beat_at FROM batch GROUP BY pile_no
          UNION ALL SELECT pile_no, 0, NULL, beats, at FROM beats) counted
    GROUP BY pile_no
), heads AS (
    INSERT INTO pile_frame_heads AS h (pile_no, frames, last_frame_at, heartbeats, last_heartbeat_at)
    SELECT pile_no, frames, to_timestamp(frame_at), beats, to_timestamp(beat_at) FROM per_pile ORDER BY pile_no
    ON CONFLICT (pile_no) DO UPDATE SET frames = h.frames + excluded.frames,
        last_frame_at = greatest(h.last_frame_at, excluded.last_frame_at),
        heartbeats = h.heartbeats + excluded.heartbeats,
        last_heartbeat_at = greatest(h.last_heartbeat_at, excluded.last_heartbeat_at)
    RETURNING pile_no, frames
), numbered AS (
    SELECT batch.*, heads.frames - row_number() OVER w AS n, row_number() OVER w AS back
    FROM batch JOIN heads USING (pile_no)
    WINDOW w AS (PARTITION BY batch.pile_no ORDER BY batch.ord DESC)
)
INSERT INTO pile_frames AS f (pile_no, slot, n, at, outgoing, frame_type, seq, payload, refused, error)
SELECT pile_no, n %% {KEPT}, n, to_timestamp(at), outgoing, frame_type, seq, payload, refused, error
FROM numbered WHERE back <= {KEPT} ORDER BY pile_no, n
ON CONFLICT (pile_no, slot) DO UPDATE SET n = excluded.n, at = excluded.at, outgoing = excluded.outgoing,
    frame_type = excluded.frame_type, seq = excluded.seq, payload = excluded.payload,
    refused = excluded.refused, error = excluded.error
"""

Frame = tuple[str, float, bool, int, bytes, bytes, bool, "str | None"]  # a row as the gateway queues it
Beats = dict[str, tuple[int, float]]  # pile -> (heartbeats, the last one's time, seconds since the epoch)


def write(conn: Any, frames: list[Frame], beats: Beats) -> None:
    """Write one batch: ``frames`` in the order they happened, ``beats`` per pile (on an autocommit
    connection this is one round trip and one transaction)."""
    if not frames and not beats:
        return
    columns: list[Any] = [list(c) for c in zip(*frames)] if frames else [[] for _ in range(8)]
    pile, at, outgoing, kind, seq, payload, refused, error = columns
    conn.execute(WRITE, {"pile": pile, "at": at, "outgoing": outgoing, "type": kind, "seq": seq,
                         "payload": payload, "refused": refused, "error": error,
                         "beat_pile": list(beats), "beat_count": [b[0] for b in beats.values()],
                         "beat_at": [b[1] for b in beats.values()]}, prepare=True)


# ---- reading ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cursor:
    """Where a page of frames ends: the last frame shown (``at`` and ``n``); the next page is older."""

    at: datetime
    n: int


def newest(conn: Any, pile_no: str, limit: int, before: Cursor | None = None) -> list[dict[str, Any]]:
    """The pile's frames, newest first (by the time they crossed the socket), at most ``limit``, older
    than ``before`` when given."""
    older = "AND (at, n) < (%(at)s, %(n)s)" if before is not None else ""
    return conn.cursor(row_factory=dict_row).execute(  # type: ignore[no-any-return]
        "SELECT n, at, outgoing, frame_type, seq, payload, refused, error FROM pile_frames "  # noqa: S608
        f"WHERE pile_no = %(pile)s {older} ORDER BY at DESC, n DESC LIMIT %(limit)s",
        {"pile": pile_no, "limit": limit, "at": before.at if before else None,
         "n": before.n if before else None}).fetchall()


def heads(conn: Any, pile_no: str) -> dict[str, Any]:
    """The pile's counts: frames recorded ever, the newest it sent, heartbeats and the last one's time."""
    row = conn.cursor(row_factory=dict_row).execute(
        "SELECT frames, last_frame_at, heartbeats, last_heartbeat_at FROM pile_frame_heads WHERE pile_no = %s",
        (pile_no,)).fetchone()
    return row or {"frames": 0, "last_frame_at": None, "heartbeats": 0, "last_heartbeat_at": None}
