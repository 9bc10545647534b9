"""One definition of every state change: the auditor's fast mirrors stay equal to the aggregates.

Random command sequences run on a real Wallet and a real ChargingSession; after every command its
new events are encoded by the Applications' own mappers, as the event tables store them, and fed to
the audit's fast path (the decoded JSON on mirror records, through ``domain/changes.py``) and to its
reference path (the mappers and real aggregates). Every attribute a mirror keeps must equal the live
aggregate's, and the two paths must give the same report. In memory: no server is started.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from eventsourcing.domain import Aggregate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import changes
from domain.applications import APPLICATIONS
from domain.audit import Audit, reference_mappers
from domain.audit.stored import plain
from domain.errors import DomainError
from domain.session import ChargingSession, make_trade_no
from domain.tariff import Tariff, TariffSchedule
from domain.wallet import Wallet
from tests.factories import PRICES, SLOTS, record
from tests.integration.test_wallet_properties import TENANT, run, sequences

MAPPERS = reference_mappers(APPLICATIONS)
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
SCHEDULE = TariffSchedule.build(PRICES, SLOTS)


class Replays:
    """The fast and the reference audit, fed the same stored rows as the aggregates make events."""

    def __init__(self) -> None:
        self.fast = Audit()
        self.reference = Audit(fast=False, mappers=MAPPERS)
        self.nid = 0

    def store(self, application: str, aggregate: Any) -> None:
        rows = []
        for event in aggregate.collect_events():
            stored = MAPPERS[application].to_stored_event(event)
            self.nid += 1
            rows.append((stored.originator_id, stored.originator_version, stored.topic, stored.state, self.nid))
        for audit in (self.fast, self.reference):
            audit.replay(application, rows)

    def assert_mirror_equals(self, aggregate: Any) -> None:
        mirror = {**self.fast.wallets, **self.fast.sessions}[aggregate.id]
        assert type(mirror).__name__.endswith("Mirror")
        for name in type(mirror).__slots__:
            if name in ("id", "slots"):
                continue
            live = aggregate.version if name == "version" else getattr(aggregate, name)
            assert plain(getattr(mirror, name)) == plain(live), name

    def assert_paths_agree(self) -> None:
        assert self.fast.report().as_dict() == self.reference.report().as_dict()


def test_every_wallet_event_has_its_change_and_the_audit_replays_it() -> None:
    events = {n for n, v in vars(Wallet).items() if isinstance(v, type) and issubclass(v, Aggregate.Event)}
    assert set(changes.WALLET) == events - {"Event", "Created"}
    assert {f"Wallet.{n}" for n in changes.WALLET} <= set(Audit._handlers)
    assert {f"ChargingSession.{n}" for n in changes.SESSION} <= set(Audit._handlers)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(sequence=sequences)
def test_the_wallet_mirror_equals_the_wallet_after_every_command(sequence: list) -> None:
    mirrored(Wallet(tenant_id=TENANT, driver_id="d", author="test"), sequence)


def mirrored(wallet: Wallet, sequence: list) -> Replays:
    """Run ``sequence`` on ``wallet``, checking the auditor's mirror against it after every command and
    the fast replay against the reference one at the end."""
    replays = Replays()
    replays.store("Wallets", wallet)

    def apply(name: str, kwargs: dict[str, Any]) -> None:
        getattr(wallet, name)(**kwargs)
        replays.store("Wallets", wallet)
        replays.assert_mirror_equals(wallet)

    replays.assert_mirror_equals(wallet)
    run(apply, sequence)
    replays.assert_paths_agree()
    return replays


def legacy_refusal(s: ChargingSession, at: datetime) -> None:
    """A refused start as events stored before ``Failed`` recorded it: StartAcknowledged(ok=False)."""
    if s.state == "requested":
        s._start_acknowledged(at=at, ok=False, reason="")


SESSION_COMMANDS: dict[str, Any] = {
    "ack": lambda s, at, n: s.acknowledge_start(at, ok=n % 4 != 0),
    "legacy refusal": lambda s, at, n: legacy_refusal(s, at),
    "charging": lambda s, at, n: s.mark_charging(at),
    "reading": lambda s, at, n: s.record_reading(at, energy=max(0, s.meter_energy + n - 200), power=600),
    "fault": lambda s, at, n: s.record_fault(at, "pile", f"0x{n % 256:02x}", "test"),
    "stop": lambda s, at, n: s.request_stop(at, "driver", "driver"),
    "offline": lambda s, at, n: s.pile_offline(at),
    "online": lambda s, at, n: s.pile_online(at),
    "fail": lambda s, at, n: s.fail(at, "start failed", "ops"),
    "settle": lambda s, at, n: s.settle(record((*s.tier_energy[:3], s.tier_energy[3] + n), T0,
                                               pile_total_amount=None if n % 3 else n), at),
    "force close": lambda s, at, n: s.force_close(at, "stuck", "ops"),
    "expire": lambda s, at, n: s.expire(at),
}
session_sequences = st.lists(st.tuples(st.sampled_from(sorted(SESSION_COMMANDS)), st.integers(0, 3000),
                                       st.integers(0, 40)), min_size=1, max_size=30)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(sequence=session_sequences, offline=st.booleans())
def test_the_session_mirror_equals_the_session_after_every_command(sequence: list, offline: bool) -> None:
    replays = Replays()
    tariff = Tariff.create(TENANT, "standard", SCHEDULE, "ops")
    replays.store("Tariffs", tariff)
    session = ChargingSession.open(
        trade_no=make_trade_no("32010600019236", 1, T0, 1), tenant_id=TENANT, station_id=uuid.UUID(int=2),
        pile_no="32010600019236", gun_no=1, wallet_id=None if offline else uuid.UUID(int=3),
        hold_fen=0 if offline else 50_00, tariff_id=tariff.id, tariff_version=tariff.version, schedule=SCHEDULE,
        timezone="Asia/Shanghai", origin="offline" if offline else "app", at=T0, author="driver")
    replays.store("Sessions", session)
    replays.assert_mirror_equals(session)
    at = T0
    for command, n, minutes in sequence:
        at += timedelta(minutes=minutes)
        try:
            SESSION_COMMANDS[command](session, at, n)
        except DomainError:
            continue
        replays.store("Sessions", session)
        replays.assert_mirror_equals(session)
    replays.assert_paths_agree()
