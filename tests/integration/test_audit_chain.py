"""`audit seal` / `audit verify`: rows edited, deleted or inserted straight in Postgres are caught at the
event they touch; the seals' copies in NATS JetStream back the ones in Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from adapters.audit.chain import LAG, genesis, link, seal
from adapters.audit.seals import publish_seals
from adapters.audit.verify import verify
from adapters.cli.demo import run_demo
from adapters.cli.relay import running_relay
from domain.ledger import Ledger
from tests.factories import build_world

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def demo(ledger: Ledger, database_url: str, nats_url: str) -> Iterator[str]:
    """A ledger with the scripted demo day in it, sealed, the seals published to NATS."""
    with running_relay(ledger, database_url, nats_url) as relay:
        assert run_demo(ledger, relay, out=lambda *_: None)
    assert len(seal(database_url)) == 4
    assert publish_seals(database_url, nats_url) == 4
    yield database_url


def sql(url: str, query: str, params: list | None = None) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def nid_of(url: str, table: str, topic_suffix: str, nth: int = 0) -> int:
    rows = sql(url, f"SELECT notification_id FROM {table} WHERE topic LIKE %s ORDER BY notification_id",
               ["%" + topic_suffix])
    return rows[nth][0]


def test_a_sealed_ledger_verifies_and_the_seals_live_in_nats_too(demo: str, nats_url: str) -> None:
    report = verify(demo, nats_url)
    assert report.ok, report.as_text()
    assert report.nats_seals == 4
    assert {app: n for app, n in report.checked.items() if n} == {"Registry": 5, "Tariffs": 1, "Sessions": 73, "Wallets": 19}
    assert set(report.unsealed.values()) == {0}


def test_an_edited_state_is_caught_at_that_event(demo: str, nats_url: str) -> None:
    target = nid_of(demo, "wallets_events", "Wallet.ToppedUp", 1)
    sql(demo, "UPDATE wallets_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
              "'3000', '3001'), 'UTF8') WHERE notification_id = %s", [target])
    report = verify(demo, nats_url)
    assert not report.ok
    first = report.first_break
    assert (first.application, first.notification_id, first.kind) == ("Wallets", target, "edited")
    assert first.topic == "domain.wallet:Wallet.ToppedUp"
    assert len(report.breaks) == 1  # the chain goes on from the stored link: one edit, one break


def test_an_edited_identity_is_caught_too(demo: str, nats_url: str) -> None:
    target = nid_of(demo, "sessions_events", "ChargingSession.Settled", 0)
    sql(demo, "UPDATE sessions_events SET topic = 'domain.session:ChargingSession.Abandoned' "
              "WHERE notification_id = %s", [target])
    first = verify(demo, nats_url).first_break
    assert (first.application, first.notification_id, first.kind) == ("Sessions", target, "edited")


def test_a_deleted_event_in_the_middle_is_caught_where_it_was(demo: str, nats_url: str) -> None:
    sql(demo, "DELETE FROM sessions_events WHERE notification_id = 30")
    report = verify(demo, nats_url)
    assert [(b.application, b.notification_id, b.kind) for b in report.breaks] == [("Sessions", 30, "deleted")]


def test_a_deleted_event_and_link_break_the_next_link(demo: str, nats_url: str) -> None:
    sql(demo, "DELETE FROM sessions_events WHERE notification_id = 30")
    sql(demo, "DELETE FROM audit_chain WHERE application = 'Sessions' AND notification_id = 30")
    first = verify(demo, nats_url).first_break
    assert (first.notification_id, first.kind) == (31, "edited")


def test_an_insert_into_a_notification_id_gap_is_caught(ledger: Ledger, database_url: str, nats_url: str) -> None:
    world = build_world(ledger)
    # a transaction that rolled back after taking an id leaves a gap for good
    gap = sql(database_url, "SELECT nextval('wallets_events_notification_id_seq')")[0][0]
    ledger.top_up(world.wallet_id, key="topup:2", amount=500, provider="wechat",
                  payment_ref="wx-2")
    seal(database_url)
    publish_seals(database_url, nats_url)
    assert verify(database_url, nats_url).ok
    # slip a copy of a top-up into the gap, as a later version of the same wallet
    sql(database_url, "INSERT INTO wallets_events (originator_id, originator_version, topic, state, notification_id) "
                      "SELECT originator_id, 99, topic, state, %s FROM wallets_events "
                      "WHERE topic LIKE '%%ToppedUp' ORDER BY notification_id LIMIT 1", [gap])
    report = verify(database_url, nats_url)
    assert [(b.application, b.notification_id, b.kind) for b in report.breaks] == [("Wallets", gap, "inserted")]


def test_an_insert_at_the_end_after_a_seal_dated_before_it_is_caught(demo: str, nats_url: str) -> None:
    # a top-up dated into the sealed past (the first "_data_" of the stored JSON is its timestamp)
    end = sql(demo, "INSERT INTO wallets_events (originator_id, originator_version, topic, state) "
                    "SELECT originator_id, 99, topic, convert_to(regexp_replace(convert_from(state, 'UTF8'), "
                    "'\"_data_\":\"[^\"]*\"', '\"_data_\":\"2026-01-05T08:00:00+00:00\"'), 'UTF8') "
                    "FROM wallets_events WHERE topic LIKE '%%ToppedUp' "
                    "ORDER BY notification_id LIMIT 1 RETURNING notification_id")[0][0]
    report = verify(demo, nats_url)
    assert [(b.application, b.notification_id, b.kind) for b in report.breaks] == [("Wallets", end, "backdated")]
    # sealing it does not launder it: the seal records it, and verify still names it
    (wallet_seal,) = [s for s in seal(demo) if s.application == "Wallets"]
    assert wallet_seal.backdated == (end,)
    publish_seals(demo, nats_url)
    report = verify(demo, nats_url)
    assert [(b.notification_id, b.kind) for b in report.breaks] == [(end, "backdated")]


def test_events_committed_after_a_seal_are_chained_by_the_next(ledger: Ledger, database_url: str,
                                                               nats_url: str) -> None:
    world = build_world(ledger)
    seal(database_url)
    ledger.top_up(world.wallet_id, key="topup:2", amount=500, provider="wechat", payment_ref="x")
    report = verify(database_url, nats_url)
    assert report.ok and report.unsealed["Wallets"] == 1
    (new,) = seal(database_url)
    assert (new.application, new.position, new.events) == ("Wallets", 3, 3)
    assert seal(database_url) == []  # nothing new, no new seal
    publish_seals(database_url, nats_url)
    report = verify(database_url, nats_url)
    assert report.ok, report.as_text()
    assert report.unsealed["Wallets"] == 0 and report.nats_seals == 4  # 3 first seals (no sessions yet) + 1


def test_a_rewritten_chain_is_caught_by_the_seal_and_its_nats_copy(demo: str, nats_url: str) -> None:
    """Whoever edits an event and recomputes every later link still cannot match the sealed head."""
    target = nid_of(demo, "wallets_events", "Wallet.ToppedUp", 0)
    sql(demo, "UPDATE wallets_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
              "'20000', '90000'), 'UTF8') WHERE notification_id = %s", [target])
    rows = sql(demo, "SELECT originator_id, originator_version, topic, state, notification_id FROM wallets_events "
                     "ORDER BY notification_id")
    head = genesis("Wallets")
    for oid, version, topic, state, nid in rows:
        head = link(head, b"Wallets", oid, version, topic, state, nid)
        sql(demo, "UPDATE audit_chain SET link = %s WHERE application = 'Wallets' AND notification_id = %s",
            [head, nid])
    report = verify(demo, nats_url)
    assert [(b.application, b.kind) for b in report.breaks] == [("Wallets", "chain_rewritten")]
    # and rewriting the seal in Postgres too is caught by its copy in NATS
    sql(demo, "UPDATE audit_seals SET head = %s WHERE application = 'Wallets'", [head])
    kinds = {b.kind for b in verify(demo, nats_url).breaks}
    assert kinds == {"chain_rewritten", "seal_differs"}


def test_the_link_covers_every_part_of_the_event() -> None:
    base = dict(previous=genesis("Wallets"), application=b"Wallets", originator_id="a", version=1,
                topic="t", state=b"{}", notification_id=1)
    variants = [dict(base, **{k: v}) for k, v in (
        ("previous", genesis("Sessions")), ("application", b"Sessions"), ("originator_id", "b"), ("version", 2),
        ("topic", "u"), ("state", b"{ }"), ("notification_id", 2))]
    links = {link(**v) for v in [base, *variants]}
    assert len(links) == 8
    # lengths are framed: moving a byte from the topic into the state changes the link
    assert link(**dict(base, topic="tx", state=b"{}")) != link(**dict(base, topic="t", state=b"x{}"))
    assert timedelta(0) < LAG
