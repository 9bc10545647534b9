"""Business JSON as T/CEC peers write it: numbers kept exact, ids kept as text.

* :func:`loads` parses every JSON number with a fraction or exponent as :class:`~decimal.Decimal`
  (never ``float``: ``0.1 + 0.2`` money is not money), refuses ``NaN``/``Infinity`` and a key that
  occurs twice in one object (which of the two would a peer have meant?).
* :func:`dumps` writes ``Decimal`` as a JSON number with exactly its digits (``12.30``, not
  ``12.3`` or ``12.300000000000001``), strings as UTF-8 (``ensure_ascii=False``: CJK text travels as
  itself), compact separators as the appendix example. Peers type money as JSON numbers (Java
  ``BigDecimal``/``double``, Go ``float64``), so a number is what they can read; a string would break
  the Go clients. ``float`` is refused outright: nothing in an envelope may have passed through one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

MAX_DEPTH = 16
_string = json.encoder.encode_basestring  # what json.dumps(text, ensure_ascii=False) writes, in C


class WireError(ValueError):
    """Bytes that are not the JSON a peer may send."""


def _no_constant(name: str) -> Any:
    raise WireError(f"{name} is not a number a peer may send")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise WireError(f"field {key} occurs twice in one object")
        result[key] = value
    return result


def loads(raw: bytes | str) -> Any:
    """JSON text (UTF-8 bytes, a BOM tolerated) to Python, numbers with a fraction as Decimal."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_object)
    except WireError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise WireError(f"not JSON ({type(error).__name__}: {str(error)[:80]})") from None
    _depth(value, 0)
    return value


def _depth(value: Any, level: int) -> None:
    if level > MAX_DEPTH:
        raise WireError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for item in value.values():
            _depth(item, level + 1)
    elif isinstance(value, list):
        for item in value:
            _depth(item, level + 1)


def dumps(value: Any) -> str:
    """Compact JSON with Decimal written exactly; refuses float and anything else JSON has no word for."""
    parts: list[str] = []
    _write(value, parts.append)
    return "".join(parts)


def _write(value: Any, out: Any) -> None:
    if isinstance(value, str):
        out(_string(value))
    elif value is None or isinstance(value, bool):
        out("null" if value is None else "true" if value else "false")
    elif isinstance(value, int):
        out(str(int(value)))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise WireError(f"{value} is not a JSON number")
        out(format(value, "f"))
    elif isinstance(value, float):
        raise WireError("a float reached the wire: money and measures travel as Decimal")
    elif isinstance(value, (datetime, date)):
        raise WireError("a date reached the wire unformatted: the models format times as T/CEC text")
    elif isinstance(value, Mapping):
        out("{")
        for i, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise WireError(f"object key {key!r} is not text")
            out(("," if i else "") + _string(key) + ":")
            _write(item, out)
        out("}")
    elif isinstance(value, Sequence):
        out("[")
        for i, item in enumerate(value):
            if i:
                out(",")
            _write(item, out)
        out("]")
    else:
        raise WireError(f"{type(value).__name__} has no JSON form here")
