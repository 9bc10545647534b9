"""The domain refuses text nobody should store: control characters, surrogates, bidi overrides, over-long.

Defence in depth behind the API's 422: every command that stores a name, an address or a reason a
person typed runs it through ``domain.text.checked`` and writes nothing when it is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from domain.errors import DomainError
from domain.ledger import Ledger
from domain.text import ADDRESS, NAME, REASON, InvalidText, checked
from tests.factories import PRICES, SLOTS, World, build_world

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
BAD = {
    "NUL": "a\x00b",
    "tab": "a\tb",
    "newline": "a\nb",
    "escape": "a\x1b[31mb",
    "DEL": "a\x7fb",
    "C1 control": "a\x85b",
    "lone surrogate": "a\ud800b",
    "line separator": "a\u2028b",
    "bidi override": "a\u202eb",
    "bidi isolate": "a\u2066b",
}


def high_water(ledger: Ledger) -> tuple:
    return tuple(app.recorder.max_notification_id() for app in ledger.applications)


@pytest.mark.parametrize("kind", list(BAD))
def test_checked_refuses_characters_storage_or_display_would_betray(kind: str) -> None:
    with pytest.raises(InvalidText) as raised:
        checked(BAD[kind], "station name", NAME)
    assert raised.value.code == "invalid_text"
    assert raised.value.details["field"] == "station name"
    assert isinstance(raised.value, DomainError)


def test_checked_keeps_ordinary_text_and_trims_it() -> None:
    assert checked("  望京充电站 №3 — 北区 🚗  ", "station name", NAME) == "望京充电站 №3 — 北区 🚗"
    assert checked("", "stop reason", REASON) == ""
    assert checked("x" * NAME, "station name", NAME) == "x" * NAME
    with pytest.raises(InvalidText, match="at most 200 characters"):
        checked("x" * (NAME + 1), "station name", NAME)
    with pytest.raises(InvalidText, match="is required"):
        checked("   ", "station name", NAME, required=True)
    with pytest.raises(InvalidText, match="must be text"):
        checked(42, "station name", NAME)  # type: ignore[arg-type]


def commands(ledger: Ledger, w: World, trade_no: str, bad: str) -> dict[str, Callable[[], object]]:
    """Every command that stores text a person typed, given ``bad`` in that text."""
    later = T0 + timedelta(minutes=1)
    return {
        "tenant name": lambda: ledger.create_tenant(bad, "platform"),
        "station name": lambda: ledger.create_station(w.tenant_id, bad, "1 Road", 31.2, 121.5, "ops"),
        "station address": lambda: ledger.create_station(w.tenant_id, "S", bad, 31.2, 121.5, "ops"),
        "station time zone": lambda: ledger.create_station(w.tenant_id, "S", "1 Road", 31.2, 121.5, "ops",
                                                           timezone=bad),
        "station rename": lambda: ledger.change_station(w.station_id, bad, "1 Road", "ops"),
        "station re-address": lambda: ledger.change_station(w.station_id, "S", bad, "ops"),
        "tariff name": lambda: ledger.create_tariff(w.tenant_id, bad, PRICES, SLOTS, "ops"),
        "pile disable reason": lambda: ledger.set_pile_enabled(w.pile_no, False, "ops", bad),
        "driver id": lambda: ledger.open_wallet(w.tenant_id, bad, "driver"),
        "stop reason": lambda: ledger.request_stop(trade_no, "ops", bad, later),
        "force-close reason": lambda: ledger.force_close(trade_no, at=later, reason=bad,
                                                         author="ops"),
    }


COMMANDS = ["tenant name", "station name", "station address", "station time zone", "station rename",
            "station re-address", "tariff name", "pile disable reason", "driver id", "stop reason",
            "force-close reason"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_that_stores_typed_text_refuses_bad_text_and_writes_nothing(ledger: Ledger,
                                                                                  command: str) -> None:
    w = build_world(ledger)
    ledger.pile_connected(w.pile_no, T0, "gw-1", 0x16, "V1")
    trade_no = ledger.request_start(pile_no=w.pile_no, gun_no=1, wallet_id=w.wallet_id, hold_fen=10_00, at=T0,
                                    author="driver")
    before = high_water(ledger)
    for value in (BAD["NUL"], BAD["lone surrogate"], BAD["bidi override"], "x" * (max(NAME, ADDRESS, REASON) + 1)):
        with pytest.raises(InvalidText) as raised:
            commands(ledger, w, trade_no, value)[command]()
        assert raised.value.code == "invalid_text"
        assert high_water(ledger) == before
