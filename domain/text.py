"""What a person may write into the ledger: one rule for every name, address and reason they type.

:func:`checked` is called by every command that stores such a string (tenant, station and tariff
names, station addresses and time zones, driver ids, stop / force-close / disable reasons). It
trims surrounding whitespace and refuses, with :class:`~domain.errors.InvalidText` (code
``invalid_text``) and before any event is triggered, so nothing is written:

* anything that is not a ``str``;
* control characters (Unicode category Cc: NUL, tab, CR, LF and the rest of C0, DEL, C1): Postgres
  text refuses NUL, and the others break logs, CSV exports and one-line displays (a multi-line field,
  a station's address, may hold tab, LF and CR);
* surrogates (U+D800..U+DFFF, category Cs): they have no UTF-8 form, so no store can keep them;
* line and paragraph separators (U+2028, U+2029) and the bidirectional embedding, override and
  isolate controls (U+202A..U+202E, U+2066..U+2069): text that displays as something it is not;
* more characters than the field's limit (after trimming); an empty string where one is required.

The limits are at least the operator API's (names 200, addresses and reasons 500), so the API's
422 comes first and this is defence in depth. Strings a pile sends (firmware versions, fault
descriptions) are cleaned by the pile link, not refused; the views cope with whatever the ledger
holds (``projections.base.storable``).
"""

from __future__ import annotations

import re

from domain.errors import InvalidText

NAME = 200  # tenant, station and tariff names; driver ids
ADDRESS = 500
REASON = 500  # stop, force-close and disable reasons
TIMEZONE = 64  # an IANA zone name (the longest is 32 characters)

REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]")
REFUSED_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def checked(value: object, what: str, limit: int, *, required: bool = False, multiline: bool = False) -> str:
    """``value`` trimmed, if a person may store it as ``what``; else :class:`InvalidText`.

    ``multiline`` text (a station's address) may also hold tab, LF and CR, as the API's free text does."""
    if not isinstance(value, str):
        raise InvalidText(f"{what} must be text", field=what)
    found = (REFUSED_MULTILINE if multiline else REFUSED).search(value)
    if found is not None:
        raise InvalidText(f"{what} contains U+{ord(found.group()):04X} at {found.start()}: control characters, "
                          "surrogates and bidirectional overrides are not allowed", field=what,
                          character=f"U+{ord(found.group()):04X}", position=found.start())
    value = value.strip()
    if len(value) > limit:
        raise InvalidText(f"{what} has at most {limit} characters, got {len(value)}", field=what, limit=limit)
    if required and not value:
        raise InvalidText(f"{what} is required", field=what)
    return value
