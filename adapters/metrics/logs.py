"""The logging setup: the pile, the session and the tenant on every line where known; JSON lines on demand.

Three context variables say what the code now runs for: ``pile`` (its number), ``session`` (the
trade serial) and ``tenant``. They are set at the seams where work for one of them begins (the pile
link's frame dispatch, the API's caller, the command follower), and follow the work through
``await`` and into the gateway's thread pool (which copies the context). :class:`ContextFilter`, on
every handler :func:`configure` installs, copies them onto each record, so no log call names them.

``LOG_FORMAT=json``: one JSON object per line (``ts``, ``level``, ``logger``, ``message``, and
``pile``, ``session``, ``tenant`` when known, ``exc`` with a traceback); otherwise the human format
of before, with `` [pile=… session=… tenant=…]`` appended where known.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

PILE: ContextVar[str | None] = ContextVar("log_pile", default=None)
SESSION: ContextVar[str | None] = ContextVar("log_session", default=None)
TENANT: ContextVar[str | None] = ContextVar("log_tenant", default=None)
FIELDS = (("pile", PILE), ("session", SESSION), ("tenant", TENANT))
HUMAN = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"


def bind(*, pile: Any = None, session: Any = None, tenant: Any = None) -> None:
    """Say what the current task (or thread) works for from now on; None leaves a field as it is."""
    for value, var in ((pile, PILE), (session, SESSION), (tenant, TENANT)):
        if value is not None:
            var.set(str(value))


def enter(*, pile: Any, session: Any, tenant: Any) -> None:
    """Say exactly what the current task works for now: each field set, None clearing it (the pile
    link, whose task handles one frame after another, each with its own session or none)."""
    for value, var in ((pile, PILE), (session, SESSION), (tenant, TENANT)):
        text = None if value is None else str(value)
        if var.get() != text:  # a pile's next frame mostly says the same: no new context map for it
            var.set(text)


@contextmanager
def bound(*, pile: Any = None, session: Any = None, tenant: Any = None) -> Iterator[None]:
    """:func:`bind` for a block, undone after it (for code that serves many in one task or thread)."""
    tokens = [(var, var.set(str(value))) for value, var in ((pile, PILE), (session, SESSION), (tenant, TENANT))
              if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Copies the pile, session and tenant now bound onto each record (``record.pile`` ...) and
    renders them for the human format (``record.context``). A record that names one itself
    (``extra={"pile": ...}``) keeps its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        shown = []
        for name, var in FIELDS:
            value = getattr(record, name, None) or var.get()
            setattr(record, name, value)
            if value is not None:
                shown.append(f"{name}={value}")
        record.context = f" [{' '.join(shown)}]" if shown else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: the fields a log search filters on, then the message."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                                "level": record.levelname, "logger": record.name}
        for name, var in FIELDS:
            value = getattr(record, name, None) or var.get()
            if value is not None:
                line[name] = value
        line["message"] = record.getMessage()
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str = "WARNING", fmt: str = "human", stream: Any = None) -> logging.Handler | None:
    """The root logger's handler: ``fmt`` "json" or "human", with :class:`ContextFilter`. As
    ``logging.basicConfig`` does, it leaves a root logger that has handlers of someone else's (a
    host such as pytest's log capture) alone; one installed here before is replaced. Returns the
    handler installed, if any."""
    if fmt not in ("json", "human"):
        raise ValueError(f"LOG_FORMAT is json or human, not {fmt!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "chargeledger", False)]:
        root.removeHandler(old)
    if root.handlers:
        return None
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.chargeledger = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(HUMAN))
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
