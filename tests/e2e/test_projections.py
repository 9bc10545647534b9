"""Projections: a scripted day, rebuilt from zero to the same tables; each event counted exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
import pytest

from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from projections.base import View
from projections.runner import VIEWS, Projections
from tests.factories import PRICES, SLOTS, record

ROOT = Path(__file__).resolve().parents[2]
DAY = datetime(2026, 11, 22, 0, 30, tzinfo=timezone.utc)  # 08:30 in Shanghai


@dataclass
class Tenant:
    tenant_id: UUID
    stations: list[UUID]
    piles: list[str]
    tariff_id: UUID
    wallets: dict[str, UUID]


def build_tenant(ledger: Ledger, name: str, prefix: str, author: str) -> Tenant:
    """A tenant with two stations (Shanghai, Urumqi), a pile on each, a tariff and two drivers."""
    tenant = ledger.create_tenant(name, "platform")
    stations = [ledger.create_station(tenant, f"{name} East", "1 Road", 31.2, 121.5, author),
                ledger.create_station(tenant, f"{name} West", "2 Road", 43.8, 87.6, author, "Asia/Urumqi")]
    piles = [f"{prefix}{i:04d}" for i in range(len(stations))]
    for station, pile_no in zip(stations, piles):
        ledger.register_pile(station, pile_no, "DC", 2, author)
    tariff = ledger.create_tariff(tenant, "standard", PRICES, SLOTS, author)
    for station in stations:
        ledger.assign_tariff(tariff, author, station_id=station)
    wallets = {}
    for driver in ("li", "wang"):
        wallets[driver] = ledger.open_wallet(tenant, f"{prefix}-{driver}", "driver")
        ledger.top_up(wallets[driver], key=f"top:{prefix}{driver}", amount=500_00,
                      provider="wechat", payment_ref=f"wx-{prefix}{driver}")
    return Tenant(tenant, stations, piles, tariff, wallets)


def charge(ledger: Ledger, pile_no: str, gun: int, wallet: UUID | None, at: datetime, minutes: int = 5,
           per_minute: int = 1000) -> str:
    trade = ledger.request_start(pile_no=pile_no, gun_no=gun, wallet_id=wallet, hold_fen=50_00 if wallet else 0,
                                 at=at, author="driver" if wallet else "ops")
    ledger.acknowledge_start(trade, at=at + timedelta(seconds=3), ok=True)
    ledger.mark_charging(trade, at=at + timedelta(seconds=20))
    ledger.record_readings([{"trade_no": trade, "at": at + timedelta(minutes=m), "energy": m * per_minute}
                            for m in range(1, minutes + 1)])
    return trade


def scripted_day(ledger: Ledger, step: callable = lambda: None) -> tuple[Tenant, Tenant]:  # type: ignore[valid-type]
    """Two tenants' day: every path a session takes, the pile link's events, commands, refunds.

    ``step`` runs between the parts (the live projection process catching up as the day goes on).
    """
    a = build_tenant(ledger, "Alpha", "3201060001", "alpha-admin")
    b = build_tenant(ledger, "Beta", "4401060001", "beta-admin")
    step()
    for t in (a, b):
        for pile_no in t.piles:
            ledger.pile_connected(pile_no, DAY, "gw-1", 0x16, "V2.1.3")
            ledger.report_gun(pile_no, 1, "idle", False, {}, DAY)
    step()
    t0 = DAY
    # ordinary sessions, one with the pile billing differently
    ordinary = charge(ledger, a.piles[0], 1, a.wallets["li"], t0)
    ledger.request_stop(ordinary, "alpha-admin", "driver stopped", t0 + timedelta(minutes=6))
    s = ledger.session(ordinary)
    ledger.settle(ordinary, record(tuple(s.tier_energy), t0, 6), t0 + timedelta(minutes=7))
    differs = charge(ledger, a.piles[1], 2, a.wallets["wang"], t0 + timedelta(hours=1))
    s = ledger.session(differs)
    ledger.settle(differs, record(tuple(s.tier_energy), t0, 6, pile_total_amount=123456), t0 + timedelta(hours=1, minutes=7))
    step()
    # a failed start, a meter anomaly, a fault during a session, a force-close re-priced later
    failed = ledger.request_start(pile_no=b.piles[0], gun_no=1, wallet_id=b.wallets["li"], hold_fen=10_00,
                                  at=t0 + timedelta(hours=2), author="driver")
    ledger.expire_session(failed, now=t0 + timedelta(hours=2, seconds=91))
    stuck = charge(ledger, b.piles[1], 1, b.wallets["wang"], t0 + timedelta(hours=3))
    ledger.record_reading(stuck, at=t0 + timedelta(hours=3, minutes=6), energy=10)
    ledger.record_fault(stuck, at=t0 + timedelta(hours=3, minutes=7), source="bms", code="0x21",
                        detail="insulation fault")
    ledger.report_gun(b.piles[1], 1, "fault", True, {"0x02": "emergency stop pressed"}, t0 + timedelta(hours=3, minutes=8))
    step()
    ledger.force_close(stuck, at=t0 + timedelta(hours=4), reason="pile lost power", author="beta-admin")
    ledger.settle(stuck, record((0, 0, 4000, 0), t0, 6), t0 + timedelta(hours=5))
    ledger.report_gun(b.piles[1], 1, "idle", False, {}, t0 + timedelta(hours=5))
    # an offline start reported afterwards, commissioning start without a wallet
    offline = f"{a.piles[0]}02{(t0 + timedelta(hours=6)).astimezone(ZoneInfo('Asia/Shanghai')):%y%m%d%H%M%S}0001"
    ledger.settle(offline, record((1000, 0, 0, 0), t0 + timedelta(hours=6), 20), t0 + timedelta(hours=6, minutes=21),
                  wallet_id=a.wallets["wang"])
    commissioning = charge(ledger, a.piles[1], 1, None, t0 + timedelta(hours=7), minutes=2)
    ledger.request_stop(commissioning, "alpha-admin", "commissioning done", t0 + timedelta(hours=7, minutes=3))
    step()
    # the link drops, commands, registry changes, refunds, adjustments
    ledger.pile_disconnected(a.piles[1], t0 + timedelta(hours=8), "lost heartbeats (3 missed)")
    ledger.reboot_pile(b.piles[0], author="beta-admin", at=t0 + timedelta(hours=8))
    ledger.answer_pile_command(b.piles[0], "reboot", True, "", t0 + timedelta(hours=8, seconds=5))
    ledger.set_pile_enabled(b.piles[0], False, "beta-admin", "maintenance")
    ledger.revise_tariff(a.tariff_id, PRICES, [2] * 48, "alpha-admin")
    ledger.request_refund(a.wallets["li"], key="rf:a-li", refund_id="rf-a-li", amount=100_00,
                          provider="wechat")
    ledger.adjust(b.wallets["li"], key="adj:b-li", amount=5_00, reason="goodwill",
                  author="beta-admin")
    step()
    return a, b


def snapshot(database_url: str, views: tuple[type[View], ...] = VIEWS) -> dict[str, list[str]]:
    """Every projection table's rows, as sorted JSON text."""
    out = {}
    with psycopg.connect(database_url) as conn:
        for view in views:
            for table in view.tables:
                rows = conn.execute(f"SELECT to_jsonb(t)::text FROM {table} t").fetchall()  # noqa: S608
                out[table] = sorted(r[0] for r in rows)
    return out


def test_a_rebuilt_day_is_identical_to_the_live_views(ledger: Ledger, database_url: str) -> None:
    projections = Projections(ledger.applications, eventsourcing_env(database_url), batch_size=7)
    try:
        scripted_day(ledger, step=projections.catch_up)
        projections.catch_up()
        assert projections.caught_up()
        live = snapshot(database_url)
        assert all(live[t] for t in ("orders", "revenue_daily", "alarms", "operation_log", "live_guns",
                                     "catalogue_stations", "catalogue_tariffs"))
        projections.rebuild()
        assert snapshot(database_url) == live
    finally:
        projections.close()
    with Projections(ledger.applications, eventsourcing_env(database_url), batch_size=1000) as fresh:
        fresh.rebuild(["orders", "alarms"])  # one batch each, a different batching: still the same rows
        assert snapshot(database_url) == live


def test_the_views_say_what_happened(ledger: Ledger, database_url: str) -> None:
    a, b = scripted_day(ledger)
    with Projections(ledger.applications, eventsourcing_env(database_url)) as projections:
        projections.catch_up()
    with psycopg.connect(database_url) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM orders GROUP BY state").fetchall())
        assert states == {"finished": 4, "failed": 1, "stopping": 1}
        stuck = conn.execute("SELECT state, total_fen, energy_flat, anomalies, timeline FROM orders "
                             "WHERE pile_no = %s AND gun_no = 1", (b.piles[1],)).fetchone()
        assert stuck[0] == "finished" and stuck[2] == 4000 and stuck[3] == 1
        assert [e["step"] for e in stuck[4]] == ["ordered", "requested", "started", "fault", "abandoned", "stopped",
                                                 "resettled"]
        driver = conn.execute("SELECT driver_id FROM orders WHERE wallet_id = %s LIMIT 1", (a.wallets["li"],)).fetchone()
        assert driver == ("3201060001-li",)
        # revenue equals the sum of the bills, per tenant, electricity and service apart
        for t in (a, b):
            expected = conn.execute("SELECT sum(electricity_fen), sum(service_fen), sum(energy) FROM orders "
                                    "WHERE tenant_id = %s AND total_fen IS NOT NULL", (t.tenant_id,)).fetchone()
            got = conn.execute("SELECT sum(electricity_fen), sum(service_fen), sum(energy) FROM revenue_daily "
                               "WHERE tenant_id = %s", (t.tenant_id,)).fetchone()
            assert got == expected and got[0] > 0
        kinds = dict(conn.execute("SELECT kind, count(*) FROM alarms GROUP BY kind").fetchall())
        assert kinds == {"pricing_difference": 1, "session_failed": 1, "session_abandoned": 1, "session_fault": 1,
                         "meter_anomaly": 1, "fault": 1, "lost_heartbeat": 1}
        cleared = conn.execute("SELECT count(*) FROM alarms WHERE kind = 'fault' AND cleared_at IS NOT NULL").fetchone()
        assert cleared == (1,)
        pile = conn.execute("SELECT online, disconnect_reason FROM live_piles WHERE pile_no = %s", (a.piles[1],)).fetchone()
        assert pile == (False, "lost heartbeats (3 missed)")
        gun = conn.execute("SELECT status, session_state, trade_no IS NOT NULL FROM live_guns "
                           "WHERE pile_no = %s AND gun_no = 1", (a.piles[0],)).fetchone()
        assert gun == ("idle", None, False)
        commissioning = conn.execute("SELECT session_state FROM live_guns WHERE pile_no = %s AND gun_no = 1",
                                     (a.piles[1],)).fetchone()
        assert commissioning == ("stopping",)
        ops = conn.execute("SELECT tenant_id, aggregate_type, event, author FROM operation_log "
                           "WHERE author IN ('alpha-admin', 'beta-admin') ORDER BY at").fetchall()
        assert ("Pile", "Disabled", "beta-admin") in [o[1:] for o in ops if o[0] == b.tenant_id]
        assert ("Tariff", "Revised", "alpha-admin") in [o[1:] for o in ops if o[0] == a.tenant_id]
        assert not [o for o in ops if o[3] == "alpha-admin" and o[0] != a.tenant_id]
        version = conn.execute("SELECT version FROM catalogue_tariffs WHERE tariff_id = %s", (a.tariff_id,)).fetchone()
        assert version == (2,)


def test_unknown_event_types_are_ignored(ledger: Ledger, database_url: str) -> None:
    from domain.credential import Credential

    a = build_tenant(ledger, "Alpha", "3201060001", "admin")
    ledger.wallets.save(Credential.bind("card", "0123456789ABCDEF", a.tenant_id, a.wallets["li"], "admin"))
    ledger.wallets.repository.get(Credential.create_id("card", "0123456789ABCDEF"))
    with Projections(ledger.applications, eventsourcing_env(database_url)) as projections:
        projections.catch_up()
        assert projections.caught_up()


def revenue_totals(database_url: str) -> tuple[int, int, int]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT sum(sessions), sum(energy), sum(electricity_fen + service_fen) "
                            "FROM revenue_daily").fetchone()


def many_sessions(ledger: Ledger, count: int) -> Tenant:
    t = build_tenant(ledger, "Alpha", "3201060001", "admin")
    for i in range(count):
        trade = charge(ledger, t.piles[i % 2], 1 + i % 2, t.wallets["li"], DAY + timedelta(minutes=i), minutes=3)
        s = ledger.session(trade)
        ledger.settle(trade, record(tuple(s.tier_energy), DAY, 3), DAY + timedelta(minutes=i + 4))
    return t


def test_a_batch_that_fails_midway_leaves_nothing_and_is_applied_once(ledger: Ledger, database_url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    many_sessions(ledger, 6)
    env = eventsourcing_env(database_url)
    with Projections(ledger.applications, env, batch_size=50) as projections:
        from projections.revenue import Revenue

        calls = {"n": 0}
        original = Revenue.handlers[("Sessions", "ChargingSession.Settled")]

        def crash_on_third(self, cur, item):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("killed mid-batch")
            original(self, cur, item)

        monkeypatch.setitem(Revenue.handlers, ("Sessions", "ChargingSession.Settled"), crash_on_third)
        projections.catch_up()  # the failed batch rolls back; its halves are applied, each once
        assert calls["n"] > 6 and projections.caught_up()
        monkeypatch.setitem(Revenue.handlers, ("Sessions", "ChargingSession.Settled"), original)
    with Projections(ledger.applications, env, batch_size=50) as restarted:  # a new process: positions from Postgres
        restarted.catch_up()
    with psycopg.connect(database_url) as conn:
        expected = conn.execute("SELECT count(*), sum(energy), sum(total_fen) FROM orders").fetchone()
    assert revenue_totals(database_url) == expected
    assert expected[0] == 6


def test_a_projection_process_killed_mid_batch_counts_each_event_once(ledger: Ledger, database_url: str) -> None:
    many_sessions(ledger, 40)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from adapters.postgres.env import eventsourcing_env
        from domain.ledger import Ledger
        from projections.runner import Projections
        env = eventsourcing_env({database_url!r})
        ledger = Ledger(env)
        p = Projections(ledger.applications, env, batch_size=5)
        print("ready", flush=True)
        p.catch_up()
        print("done", flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    with psycopg.connect(database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while True:  # kill it once it is well into the Sessions log, with a batch in flight
            row = conn.execute("SELECT notification_id FROM revenue_tracking WHERE application_name = 'Sessions'"
                               ).fetchone()
            if row and row[0] >= 100:
                break
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.002)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        killed_at = conn.execute("SELECT notification_id FROM revenue_tracking WHERE application_name = 'Sessions'"
                                 ).fetchone()[0]
        head = conn.execute("SELECT max(notification_id) FROM sessions_events").fetchone()[0]
    assert killed_at < head, "the process finished before it was killed"
    with Projections(ledger.applications, eventsourcing_env(database_url), batch_size=5) as restarted:
        restarted.catch_up()
        assert restarted.caught_up()
    with psycopg.connect(database_url) as conn:
        orders = conn.execute("SELECT count(*), sum(energy), sum(total_fen), sum(readings) FROM orders").fetchone()
    assert orders[0] == 40 and orders[3] == 40 * 3
    assert revenue_totals(database_url) == orders[:3]
    live = snapshot(database_url)
    with Projections(ledger.applications, eventsourcing_env(database_url)) as projections:
        projections.rebuild()
    assert snapshot(database_url) == live


def test_two_processes_on_one_view_never_apply_a_batch_twice(ledger: Ledger, database_url: str) -> None:
    many_sessions(ledger, 10)
    env = eventsourcing_env(database_url)
    import threading

    runners = [Projections(ledger.applications, env, batch_size=3) for _ in range(2)]
    try:
        threads = [threading.Thread(target=r.catch_up) for r in runners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        runners[0].catch_up()
    finally:
        for r in runners:
            r.close()
    with psycopg.connect(database_url) as conn:
        orders = conn.execute("SELECT count(*), sum(energy), sum(total_fen) FROM orders").fetchone()
        readings = conn.execute("SELECT sum(readings) FROM orders").fetchone()[0]
    assert orders[0] == 10 and readings == 30
    assert revenue_totals(database_url) == orders
