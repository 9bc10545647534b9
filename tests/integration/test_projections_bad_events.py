"""Whatever the ledger holds, the views project; a view that still fails holds back only itself.

The events here are written straight into the ledger, past the API and the domain's own checks
(the event store is append-only: whatever got in once stays), with the strings Postgres refuses
(NUL, lone surrogates), strings too long for an index, and numbers JSON has no name for.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from adapters.cli.projections import print_status
from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from domain.registry import Pile, Station, Tenant
from domain.session import ChargingSession
from domain.tariff import Tariff, TariffSchedule
from domain.wallet import Wallet
from projections.base import VIEW_TEXT_LIMIT, StoringCursor
from projections.revenue import Revenue
from projections.runner import Projections
from tests.factories import PRICES, SLOTS, build_world, record
from tests.e2e.test_projections import snapshot

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
SURROGATE = "SURROGATE-MARKER"  # replaced by a lone-surrogate escape in the stored JSON


def noise(n: int, seed: int) -> str:
    """``n`` random CJK characters: 3 bytes each in UTF-8, and incompressible, so an index can't shrink them."""
    rng = random.Random(seed)
    return "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(n))


def save_raw(app: Any, aggregate: Any) -> None:
    """Append the aggregate's pending events as stored, with ``SURROGATE`` made a lone surrogate (\\ud800)."""
    stored = [app.mapper.to_stored_event(e) for e in aggregate.collect_events()]
    app.recorder.insert_events([replace(s, state=s.state.replace(SURROGATE.encode(), b"\\ud800")) for s in stored])


def bad_day(ledger: Ledger) -> dict[str, Any]:
    """A tenant's ordinary day, and then the events nobody should have been able to store."""
    w = build_world(ledger)
    ledger.pile_connected(w.pile_no, T0, "gw-1", 0x16, "V1\x00")
    ledger.report_gun(w.pile_no, 1, "fault", True, {"\x00": "NUL\x00fault", noise(3000, 1): "long"}, T0)
    ledger.registry.save(Tenant(name="NUL\x00tenant", author="x\x00"))
    station = Station(tenant_id=w.tenant_id, name=noise(5000, 2), address="\x00", latitude=31.2, longitude=121.5,
                      timezone="Asia/Shanghai", author="ops")
    ledger.registry.save(station)
    ledger.tariffs.save(Tariff(tenant_id=w.tenant_id, name=noise(4000, 3),
                               schedule=TariffSchedule.build(PRICES, SLOTS).as_dict(), author="ops"))
    ledger.wallets.save(Wallet(tenant_id=w.tenant_id, driver_id="driver\x00nul", author="x"))
    trade = ledger.request_start(pile_no=w.pile_no, gun_no=2, wallet_id=w.wallet_id, hold_fen=10_00, at=T0,
                                 author="driver")
    ledger.acknowledge_start(trade, at=T0 + timedelta(seconds=3), ok=True)
    ledger.mark_charging(trade, at=T0 + timedelta(seconds=20))
    ledger.record_reading(trade, at=T0 + timedelta(minutes=1), energy=100, soc_pct=float("nan"),
                          note="\x00")
    ledger.record_fault(trade, at=T0 + timedelta(minutes=2), source="bms\x00", code="\x00",
                        detail=noise(2000, 4))
    session = ledger.sessions.get(ChargingSession.create_id(trade), ChargingSession, "session")
    session._stop_requested(at=T0 + timedelta(minutes=3), reason="stop\x00" + noise(3000, 5), author="ops\x00",
                            record_deadline=T0 + timedelta(minutes=13))
    session._abandon(at=T0 + timedelta(minutes=4), reason="force\x00close", author="ops")
    ledger.sessions.save(session)
    ledger.registry.update(Pile.create_id(w.pile_no), Pile, "pile",
                           lambda p: p.disable(author="ops", reason="maintenance\x00"))
    save_raw(ledger.registry, Tenant(name=f"lone {SURROGATE} surrogate", author="x"))
    pile = ledger.registry.get(Pile.create_id(w.pile_no), Pile, "pile")
    pile.disconnect(at=T0 + timedelta(minutes=5), reason=f"link {SURROGATE} lost")
    save_raw(ledger.registry, pile)
    return {"world": w, "trade": trade, "station": station.id}


ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=3000)  # every code point, surrogates too
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
                    max_leaves=6)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_TEXT, document=JSON)
def test_storable_makes_any_string_and_json_fit_text_jsonb_and_an_index(database_url: str, text: str,
                                                                        document: Any) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS probe (key uuid, name text, doc jsonb)")
        conn.execute("CREATE INDEX IF NOT EXISTS probe_name ON probe (key, name)")
        StoringCursor(conn.cursor()).execute("INSERT INTO probe VALUES (gen_random_uuid(), %s, %s)",
                                             (text, Jsonb(document)))
        stored = conn.execute("SELECT name FROM probe").fetchone()[0]
        conn.rollback()
    assert len(stored) <= VIEW_TEXT_LIMIT
    if "\x00" not in text and not any("\ud800" <= c <= "\udfff" for c in text) and len(text) <= VIEW_TEXT_LIMIT:
        assert stored == text  # anything Postgres can keep is kept as it is


def failing_views(database_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT view, application, error FROM projection_health").fetchall()


def test_every_stored_event_is_projected_whatever_its_strings_hold(ledger: Ledger, database_url: str) -> None:
    day = bad_day(ledger)
    env = eventsourcing_env(database_url)
    with Projections(ledger.applications, env, batch_size=4) as projections:
        projections.catch_up()
        assert projections.caught_up()
    assert failing_views(database_url) == []
    with psycopg.connect(database_url) as conn:
        tenants = {r[0] for r in conn.execute("SELECT name FROM catalogue_tenants")}
        assert {"NUL\ufffdtenant", "lone \ufffd surrogate"} <= tenants
        name, address = conn.execute("SELECT name, address FROM catalogue_stations WHERE station_id = %s",
                                     (day["station"],)).fetchone()
        assert len(name) == VIEW_TEXT_LIMIT and name.endswith("\u2026") and address == "\ufffd"
        assert name[:-1] == noise(5000, 2)[:VIEW_TEXT_LIMIT - 1]
        state, reason, timeline = conn.execute("SELECT state, reason, timeline FROM orders WHERE trade_no = %s",
                                               (day["trade"],)).fetchone()
        assert state == "abandoned" and reason == "force\ufffdclose"
        assert "stop\ufffd" in [s.get("reason", "")[:5] for s in timeline]
        piles = conn.execute("SELECT program_version, disconnect_reason FROM live_piles").fetchone()
        assert piles == ("V1\ufffd", "link \ufffd lost")
        faults = conn.execute("SELECT faults FROM live_guns WHERE gun_no = 1").fetchone()[0]
        assert "\ufffd" in faults
        assert conn.execute("SELECT reading->>'soc_pct' FROM live_guns WHERE gun_no = 2").fetchone() is not None
        assert conn.execute("SELECT count(*) FROM order_drivers WHERE driver_id = 'driver\ufffdnul'").fetchone() == (1,)
        logged = conn.execute("SELECT detail->>'reason' FROM operation_log WHERE event = 'Disabled'").fetchone()
        assert logged == ("maintenance\ufffd",)
    live = snapshot(database_url)
    with Projections(ledger.applications, env) as projections:
        projections.rebuild()
        assert projections.caught_up()
    assert snapshot(database_url) == live


def test_a_failing_view_holds_back_only_itself_and_catches_up_once_fixed(
        ledger: Ledger, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    w = build_world(ledger)
    trades = []
    for n in range(6):
        at = T0 + timedelta(hours=n)
        trade = ledger.request_start(pile_no=w.pile_no, gun_no=1, wallet_id=w.wallet_id, hold_fen=10_00, at=at,
                                     author="driver")
        ledger.settle(trade, record((0, 0, 1000, 0), at, 10), at + timedelta(minutes=11))
        trades.append(trade)
    poison = trades[3]
    original = Revenue.handlers[("Sessions", "ChargingSession.Settled")]

    def broken(view: Any, cur: Any, item: Any) -> None:
        if item.event.originator_id == ChargingSession.create_id(poison):
            raise RuntimeError("revenue cannot take this one")
        original(view, cur, item)

    monkeypatch.setitem(Revenue.handlers, ("Sessions", "ChargingSession.Settled"), broken)
    clock = [1000.0]
    env = eventsourcing_env(database_url)
    with Projections(ledger.applications, env, clock=lambda: clock[0]) as projections:
        projections.catch_up()  # no exception: the other views move on
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT count(*) FROM orders WHERE state = 'finished'").fetchone() == (6,)
            health = conn.execute("SELECT view, application, notification_id, event, error, attempts, position "
                                  "FROM projection_health").fetchall()
            poison_id = conn.execute("SELECT max(notification_id) FROM sessions_events WHERE originator_id = %s",
                                     (ChargingSession.create_id(poison),)).fetchone()[0]
            # everything before the failing event is applied; the view stands just before it
            assert conn.execute("SELECT sum(sessions) FROM revenue_daily").fetchone() == (3,)
        assert len(health) == 1
        view, application, notification_id, event, error, attempts, position = health[0]
        assert (view, application, notification_id, event) == ("revenue", "Sessions", poison_id,
                                                                "ChargingSession.Settled")
        assert "revenue cannot take this one" in error and attempts == 1 and position < poison_id
        assert not projections.caught_up()
        logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(logged) == 1 and logged[0].startswith(
            f"projections: view revenue is held back at Sessions #{poison_id} ChargingSession.Settled (attempt 1")
        assert print_status(projections) == 1  # chargeledger projections status
        shown = capsys.readouterr().out
        assert f"HELD BACK revenue on Sessions at #{poison_id} ChargingSession.Settled" in shown
        assert "revenue cannot take this one" in shown

        projections.catch_up()  # not due yet: no new attempt
        assert failing_views(database_url)[0][:2] == ("revenue", "Sessions")
        clock[0] += 3600
        projections.catch_up()  # due: tried again, still failing
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT attempts FROM projection_health").fetchone() == (2,)

        monkeypatch.setitem(Revenue.handlers, ("Sessions", "ChargingSession.Settled"), original)
        clock[0] += 3600
        projections.catch_up()
        assert projections.caught_up() and print_status(projections) == 0
    assert failing_views(database_url) == []
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT sum(sessions) FROM revenue_daily").fetchone() == (6,)


def test_an_event_that_cannot_be_decoded_holds_back_only_the_views_that_read_it(
        ledger: Ledger, database_url: str) -> None:
    w = build_world(ledger)
    pile = ledger.registry.get(Pile.create_id(w.pile_no), Pile, "pile")
    pile.connect(at=T0, gateway="gw-1", protocol_version=0x16, program_version="V1")
    stored = [ledger.registry.mapper.to_stored_event(e) for e in pile.collect_events()]
    ledger.registry.recorder.insert_events([replace(s, state=b"{not json") for s in stored])
    ledger.create_tenant("After", "platform")
    with Projections(ledger.applications, eventsourcing_env(database_url)) as projections:
        projections.catch_up()
    failing = {(view, app) for view, app, _ in failing_views(database_url)}
    assert failing == {("live_status", "Registry"), ("alarms", "Registry")}  # the views that read Pile.Connected
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM catalogue_tenants").fetchone() == (2,)
