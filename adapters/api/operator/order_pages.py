"""A platform admin's orders over several shards: one keyset page merged from each shard's, and a cursor
that carries every shard's position (docs/shards.md, "What a platform admin sees").

Each shard pages its own orders exactly as a single database does: newest first by ``seq`` (its own
Sessions notification id), ``seq < position``. ``seq`` numbers of two databases are not comparable,
so the merge takes, at each step, the shard whose next row was *ordered* last (``ordered_at``, then
the map's order, then ``seq``): the page reads newest first across shards, and every shard's rows stay
in their own ``seq`` order, which is what keeps paging exact. The cursor records, per shard, the
``seq`` of the last row of that shard the caller was given (``*``: none yet, ``-``: that shard has
nothing more), so an order committed while someone pages lands above every position and is never
shown twice or pushed out of a page, on any shard.

The cursor is opaque (URL-safe Base64 of ``m1|s1:1042,s2:*,s3:-``) and checked like the single
shard's: it must name every shard of the map once, each with a positive position, ``*`` or ``-``;
anything else is ``422 invalid_cursor``. A position only says where to continue: the filters and the
caller's scope are applied to every page again, so a forged cursor shows nothing it could not list.
A single shard's cursor (a bare ``seq``) is not accepted here, nor this one on a single shard.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from adapters.api.errors import ApiError
from projections.orders import find_orders

VERSION = "m1"
START, DONE = "*", "-"
MAX_CURSOR = 1024  # characters: room for ~50 shards


def invalid() -> ApiError:
    return ApiError(422, "invalid_cursor", "the cursor is not one this API returned")


def encode_positions(positions: dict[str, int | str]) -> str | None:
    """The cursor for ``positions`` (shard -> last seq given, START or DONE); None once every shard is done."""
    if all(p == DONE for p in positions.values()):
        return None
    text = VERSION + "|" + ",".join(f"{name}:{pos}" for name, pos in positions.items())
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_positions(cursor: str | None, names: Sequence[str]) -> dict[str, int | str]:
    """Every shard's position from ``cursor`` (None: the first page, every shard from its newest)."""
    if cursor is None:
        return dict.fromkeys(names, START)
    try:
        text = base64.urlsafe_b64decode(cursor.encode() + b"==").decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid() from None
    version, _, body = text.partition("|")
    positions: dict[str, int | str] = {}
    for part in body.split(",") if version == VERSION else ():
        name, sep, pos = part.partition(":")
        if not sep or name in positions:
            raise invalid()
        if pos in (START, DONE):
            positions[name] = pos
        elif pos.isdigit() and int(pos) > 0 and len(pos) <= 19:
            positions[name] = int(pos)
        else:
            raise invalid()
    if list(positions) != list(names):  # every shard of the map, in its order: a cursor of this deployment
        raise invalid()
    return positions


def merged_page(shards: Sequence[Any], filters: dict[str, Any], cursor: str | None,
                limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """The page of ``limit`` orders after ``cursor`` over ``shards`` (each with ``name`` and ``pool``),
    and the next cursor (None: nothing after this page)."""
    positions = decode_positions(cursor, [s.name for s in shards])
    pages: dict[str, list[dict[str, Any]]] = {}
    for shard in shards:
        pos = positions[shard.name]
        if pos == DONE:
            pages[shard.name] = []
            continue
        with shard.pool.connection() as conn:
            pages[shard.name] = find_orders(conn, **filters, before_seq=None if pos == START else pos, limit=limit)
    order = {s.name: i for i, s in enumerate(shards)}
    taken = dict.fromkeys(pages, 0)
    rows: list[dict[str, Any]] = []
    while len(rows) < limit:
        heads = [(name, page[taken[name]]) for name, page in pages.items() if taken[name] < len(page)]
        if not heads:
            break
        name, row = max(heads, key=lambda h: (h[1]["ordered_at"], -order[h[0]], h[1]["seq"]))
        rows.append(row)
        taken[name] += 1
    after: dict[str, int | str] = {}
    for name, page in pages.items():
        if positions[name] == DONE or (taken[name] == len(page) and len(page) < limit):
            after[name] = DONE  # everything it had was given
        elif taken[name]:
            after[name] = page[taken[name] - 1]["seq"]
        else:
            after[name] = positions[name]
    return rows, encode_positions(after)
