"""The big screen's and the H5 page's figures, formatted from integers exactly (no float on the way), and
every message key their Python names in the catalogue (the catalogue test reads only ``[a-z]+.`` keys)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from adapters.web.catalogue import MESSAGES
from adapters.web.pages import h5, h5_charge, screen
from projections.power import bucket_of

WEB = Path(__file__).resolve().parents[2] / "adapters" / "web"


def test_the_screen_shows_energy_power_and_money_exactly() -> None:
    assert [screen.kwh(e) for e in (0, 9999, 12_345_678, 10_000_000_000)] == ["0.0", "0.9", "1,234.5", "1,000,000.0"]
    assert [screen.kw(w) for w in (0, 999, 139_712, 1_234_567)] == ["0.0", "0.9", "139.7", "1,234.5"]
    assert [screen.yuan(f) for f in (0, 5, 123_456_789, -250)] == ["0.00", "0.05", "1,234,567.89", "-2.50"]


def test_the_h5_bill_shows_exact_tier_amounts_and_prices_without_trailing_zeros() -> None:
    assert h5_charge.trimmed("1.50000") == "1.50" and h5_charge.trimmed("1.12345") == "1.12345"
    assert h5_charge.trimmed("0.00000") == "0.00"
    assert h5_charge.nano_yuan(534_600_000) == "0.5346" and h5_charge.nano_yuan(1) == "0.000000001"
    assert h5_charge.elapsed(3 * 3600 + 62) == "03:01:02"


def test_quarter_hours_are_utc_and_line_up_with_every_zone() -> None:
    at = datetime(2026, 11, 22, 3, 44, 59, 999, tzinfo=UTC)
    assert bucket_of(at) == datetime(2026, 11, 22, 3, 30, tzinfo=UTC)
    kathmandu = at.astimezone(timezone(timedelta(hours=5, minutes=45)))
    assert bucket_of(kathmandu) == bucket_of(at)


def test_every_key_the_screen_and_h5_modules_name_is_in_the_catalogue() -> None:
    named = set()
    for module in (h5, h5_charge, screen):
        named |= set(re.findall(r'"((?:h5|screen|gun)\.[a-z0-9_.]*[a-z0-9_])"', Path(module.__file__).read_text()))
    for path in [*(WEB / "templates" / "h5").glob("*.html"), *(WEB / "templates" / "screen").glob("*.html")]:
        named |= set(re.findall(r'_\(\s*"([a-z0-9_.]*[a-z0-9_])"', path.read_text()))
    named -= {"gun.html"}  # a template's name, not a key
    assert len(named) > 100 and sorted(named - MESSAGES.keys()) == []
    assert set(screen.ALARM_KINDS.values()) <= MESSAGES.keys() and set(h5_charge.TIERS.values()) <= MESSAGES.keys()
