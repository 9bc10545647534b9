"""The pile link's seams to the metrics and the log context, so the link itself calls one function a seam.

Frames are labelled with their message class name (``Heartbeat``, ``TransactionRecord``; ``unknown``
for a type the codec has no class for), a bounded set; a frame written is named from its type byte.
:func:`bind` puts the pile, the session (the trade serial a frame names) and the tenant (when the
link knows it: ``link.tenant_id``, set at login) on every log line of the frame's handling
(:mod:`adapters.metrics.logs`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from adapters.metrics import instruments, logs
from pile_link.ykc.messages import MESSAGES

FRAME_TYPE_AT = 5  # 0x68, length, two sequence bytes, the encryption flag, then the frame type


@cache
def frame_name(frame_type: int) -> str:
    cls = MESSAGES.get(frame_type)
    return cls.__name__ if cls is not None else "unknown"


@cache
def _in(frame_type: int) -> tuple[Any, Any]:
    """The labelled children of a frame type, looked up once (a heartbeat pays two increments, no lookup)."""
    name = frame_name(frame_type)
    return instruments.FRAMES_IN.labels(name), instruments.FRAME_HANDLING.labels(name)


@cache
def _out(frame_type: int) -> Any:
    return instruments.FRAMES_OUT.labels(frame_name(frame_type))


def frame_in(frame_type: int, seconds: float) -> None:
    """A frame read and handled (refused, or not decodable, included) in ``seconds``."""
    counted, timed = _in(frame_type)
    counted.inc()
    timed.observe(seconds)


def frame_out(data: bytes) -> None:
    _out(data[FRAME_TYPE_AT] if len(data) > FRAME_TYPE_AT else -1).inc()


def decode_error(code: str) -> None:
    instruments.DECODE_ERRORS.labels(code).inc()


def bind(link: Any, msg: Any) -> None:
    """The log context of the frame now handled: its pile, its session, the pile's tenant."""
    trade_no = getattr(msg, "trade_no", None)  # all zeros on an idle gun's 0x13: no session
    logs.enter(pile=link.pile_no or getattr(msg, "pile_no", None),
               session=trade_no if trade_no and trade_no.strip("0") else None, tenant=getattr(link, "tenant_id", None))
