"""The operator API's frames of one pile: what the gateway read from it and wrote to it, newest first, decoded.

The gateway keeps each logged-in pile's newest 200 frames (heartbeats only counted) in ``pile_frames``
(:mod:`adapters.postgres.pile_frames`, written by :mod:`pile_link.frame_log`); this reads them for a
pile in the caller's scope (404 outside it, as every pile endpoint) and decodes each with the YKC codec
(:func:`pile_link.ykc.decode_message`): its message's name and fields, or, for a frame that does not
decode, the codec's reason. The console's pile page shows the same answer (``frames_page``).
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from adapters.api.shards import pool_of
from adapters.api import inputs as t
from adapters.api.auth import Principal
from adapters.api.errors import ApiError
from adapters.api.operator.deps import E403_SCOPE, ERRORS, PILE, Caller, PileNo, check_pile, example
from adapters.postgres import pile_frames
from pile_link.ykc import DecodeError, Frame, Message, decode_message

router = APIRouter(prefix="/operator/v1", responses=t.BAD_BODY)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
PAGE = 50  # frames a page shows unless asked for another number
CURSOR = r"^[0-9]{1,19}-[0-9]{1,19}$"  # "<at, microseconds since 1970>-<n>" of the last frame of a page

FRAME_EXAMPLE = {"n": 41, "at": "2026-11-22T01:00:00.123456+00:00", "direction": "in", "frame_type": 0x13,
                 "type": "0x13", "seq": "0029", "payload": "000000…", "refused": False,
                 "message": "RealtimeData", "title": "上传实时监测数据",
                 "fields": {"pile_no": PILE, "gun_no": "01", "status": 2, "plugged": 0}, "error": None}
PAGE_EXAMPLE = {"pile_no": PILE, "items": [FRAME_EXAMPLE], "next_cursor": "1795222800123456-41", "frames": 42,
                "last_frame_at": "2026-11-22T01:00:00.123456+00:00", "heartbeats": 1290,
                "last_heartbeat_at": "2026-11-22T01:00:05.001000+00:00", "kept": pile_frames.KEPT}


@router.get("/piles/{pile_no}/frames", tags=["piles"], summary="A pile's newest frames, in and out, decoded",
            description="The frames the gateway read from the pile and wrote to it after its login, newest first "
                        f"(the newest {pile_frames.KEPT} are kept; heartbeats are only counted): each with its "
                        "direction, type, sequence bytes and payload in hex, whether the boundary refused it, and "
                        "the codec's decoding (the message's name and fields) or why it does not decode. Pass "
                        "`next_cursor` back as `cursor` for older frames until it is null.",
            responses=example(PAGE_EXAMPLE, 200, *ERRORS, e403=E403_SCOPE))
def list_frames(request: Request, who: Caller, pile_no: PileNo,
                cursor: Annotated[t.identifier(CURSOR, 40) | None,  # type: ignore[valid-type]
                                  Query(description="next_cursor of the previous page")] = None,
                limit: Annotated[int, Query(ge=1, le=pile_frames.KEPT)] = PAGE) -> JSONResponse:
    return JSONResponse(frames_page(request, who, pile_no, cursor, limit))


def frames_page(request: Request, who: Principal, pile_no: str, cursor: str | None = None,
                limit: int = PAGE) -> dict[str, Any]:
    """A pile's frames in ``who``'s scope, newest first, decoded (the API's answer and the console's page)."""
    check_pile(request, who, pile_no)
    before = decode_cursor(cursor)
    with pool_of(request).connection() as conn:
        rows = pile_frames.newest(conn, pile_no, limit, before)
        heads = pile_frames.heads(conn, pile_no)
    last = rows[-1] if len(rows) == limit else None
    return {"pile_no": pile_no, "items": [decoded(row) for row in rows],
            "next_cursor": encode_cursor(last["at"], last["n"]) if last else None,
            "frames": heads["frames"], "last_frame_at": iso(heads["last_frame_at"]),
            "heartbeats": heads["heartbeats"], "last_heartbeat_at": iso(heads["last_heartbeat_at"]),
            "kept": pile_frames.KEPT}


def encode_cursor(at: datetime, n: int) -> str:
    return f"{(at - EPOCH) // timedelta(microseconds=1)}-{n}"


def decode_cursor(cursor: str | None) -> pile_frames.Cursor | None:
    if cursor is None:
        return None
    if not re.fullmatch(CURSOR, cursor):
        raise ApiError(422, "invalid_cursor", "the cursor is not one this API returned")
    micros, n = cursor.split("-")
    try:
        return pile_frames.Cursor(EPOCH + timedelta(microseconds=int(micros)), int(n))
    except OverflowError:
        raise ApiError(422, "invalid_cursor", "the cursor is not one this API returned") from None


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


# ---- decoding ------------------------------------------------------------------------------------------------
def decoded(row: dict[str, Any]) -> dict[str, Any]:
    """One stored frame as the API answers it: the raw parts in hex, then the codec's reading of it."""
    seq, payload = bytes(row["seq"]), bytes(row["payload"])
    frame = {"n": row["n"], "at": iso(row["at"]), "direction": "out" if row["outgoing"] else "in",
             "frame_type": row["frame_type"], "type": f"0x{row['frame_type']:02X}", "seq": seq.hex().upper(),
             "payload": payload.hex().upper(), "refused": row["refused"], "message": None, "title": None,
             "fields": None, "error": row["error"]}
    if row["error"] is None:
        try:
            msg = decode_message(Frame(seq, 0, row["frame_type"], payload))
        except DecodeError as error:
            frame["error"] = f"{error.reason} [{error.code}]"
        else:
            frame.update(message=type(msg).__name__, title=title(msg), fields=fields(msg))
    return frame


def title(msg: Message) -> str | None:
    """The protocol's own name of the message (``充电桩登录认证``), from its class's docstring, if it has one."""
    words = (type(msg).__doc__ or "").split(None, 2)
    return words[1] if len(words) > 1 and re.search(r"[\u4e00-\u9fff]", words[1]) else None


def fields(msg: Message) -> dict[str, Any]:
    return {f.name: plain(getattr(msg, f.name)) for f in dataclasses.fields(msg)}  # type: ignore[arg-type]


def plain(value: Any) -> Any:
    """A message field as JSON: bytes in hex, instants in ISO 8601, nested records and lists as such."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex().upper()
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
