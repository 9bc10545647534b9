"""A roaming charge on the in-memory Ledger, audited from its stored events on both paths (the fast
mirrors and the reference aggregates), for tests/unit/test_roaming*.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.applications import APPLICATIONS
from domain.audit import Audit, AuditReport, reference_mappers
from domain.audit.mirror import roaming_view, wallet_view
from domain.ledger import Ledger
from domain.roaming import RoamingCharge
from tests.factories import build_world

MAPPERS = reference_mappers(APPLICATIONS)
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
SEQ = "BPLATFORM000000000000000001"


def replayed(ledger: Ledger) -> tuple[Audit, Audit]:
    """The fast and the reference audit of every event the in-memory Ledger stored; their views and
    reports must agree."""
    audits = (Audit(), Audit(fast=False, mappers=MAPPERS))
    for app in ledger.applications:
        rows = [(n.originator_id, n.originator_version, n.topic, n.state, n.id)
                for n in app.recorder.select_notifications(start=1, limit=1_000_000)]
        for audit in audits:
            audit.replay(app.name, rows)
    fast, reference = audits
    assert {k: roaming_view(r) for k, r in fast.roaming.items()} == \
        {k: roaming_view(r) for k, r in reference.roaming.items()}
    assert {k: wallet_view(w) for k, w in fast.wallets.items()} == \
        {k: wallet_view(w) for k, w in reference.wallets.items()}
    assert fast.report().as_dict() == reference.report().as_dict()
    return fast, reference


def audit_report(*, settle: tuple[int, int] | None = None, fail_without_wallet: bool = False,
                 stray_payable: bool = False, settle_without_wallet: bool = False) -> tuple[AuditReport, Ledger]:
    """One roaming charge (hold 30 yuan), settled if asked; or a wrong state of the books made by going
    around the use cases: a charge failed without releasing its hold, a payable posted for no charge,
    a charge settled without its wallet paying."""
    ledger = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    world = build_world(ledger)
    charge = ledger.start_roaming(tenant_id=world.tenant_id, wallet_id=world.wallet_id, peer="APLATFORM",
                                  connector_id="320106000192", station_id="", start_charge_seq=SEQ, hold_fen=30_00,
                                  at=T0, author="driver:driver-1")
    end = dict(start_time=T0, end_time=T0 + timedelta(hours=1), stop_reason=0)
    if settle:
        ledger.settle_roaming(charge.id, at=T0, energy=10_000, electricity_fen=settle[0], service_fen=settle[1], **end)
    if fail_without_wallet or settle_without_wallet:
        def change(c: Any) -> None:
            return c.fail(T0, "test") if fail_without_wallet else c.settle(T0, 10_000, 12_00, 0, **end)
        if settle_without_wallet:  # a second charge, settled without its wallet following
            charge = ledger.start_roaming(tenant_id=world.tenant_id, wallet_id=world.wallet_id, peer="APLATFORM",
                                          connector_id="320106000192", station_id="",
                                          start_charge_seq=SEQ[:-1] + "2", hold_fen=10_00, at=T0, author="d")
        ledger.sessions.update(charge.id, RoamingCharge, "roaming charge", change)
    if stray_payable:
        ledger.top_up(world.wallet_id, key="t2", amount=5_00, provider="cash", payment_ref="c")
        ledger.run_wallet_command(world.wallet_id, ("charge_to_payable", {
            "key": "charge:roam:NOSUCHCHARGE", "amount": 1_00, "peer": "APLATFORM", "reference": "x"}))
        ledger.run_wallet_command(world.wallet_id, ("release", {"key": f"release:roam:{SEQ}",
                                                                "hold_id": f"roam:{SEQ}"}))
        ledger.sessions.update(charge.id, RoamingCharge, "roaming charge", lambda c: c.fail(T0, "test"))
    return replayed(ledger)[0].report(), ledger
