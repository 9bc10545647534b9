"""The followers per shard (docs/shards.md): each shard's relay publishing into the one stream under its
own subjects and message ids, none colliding; each shard's projections and audit on its own events,
0 differences; the roles' ``--shard`` choosing the database."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import psycopg
import pytest

import app as cli
from adapters.followers.relay.publisher import Relay
from adapters.followers.relay.stream import message_id, subject_for
from adapters.audit.replay import replay
from projections.runner import Projections
from tests.factories import build_world
from tests.integration.shards_harness import TwoShards, settle_sessions, two_shards  # noqa: F401 - the fixture
from tests.integration.test_relay import read_stream, wait_for

PILES = {"s1": "32010600019236", "s2": "32010600019237"}


def charge_both(shards: TwoShards, count: int = 3) -> dict[str, list[str]]:
    trades = {}
    for name, ledger in shards.ledgers.items():
        world = build_world(ledger, pile_no=PILES[name])
        trades[name] = settle_sessions(ledger, world.pile_no, world.wallet_id, count)
    return trades


def run_relay(relay: Relay) -> threading.Thread:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(relay.run(),), daemon=True)
    thread.start()
    relay._thread_loop = loop  # type: ignore[attr-defined]
    return thread


def stop_relay(relay: Relay, thread: threading.Thread) -> None:
    relay.stop()
    thread.join(timeout=10)
    relay.close()


def test_each_shards_relay_publishes_to_the_one_stream_without_collision(two_shards: TwoShards,  # noqa: F811
                                                                         nats_url: str) -> None:
    charge_both(two_shards)
    relays = {name: Relay(ledger.applications, two_shards.env(name), nats_url, shard=name)
              for name, ledger in two_shards.ledgers.items()}
    threads = {name: run_relay(relay) for name, relay in relays.items()}
    try:
        for relay in relays.values():
            wait_for(relay.caught_up)
        # a second round after both led once: each reads its own last message back (no other shard's)
        for name, ledger in two_shards.ledgers.items():
            world = build_world(ledger, pile_no=str(int(PILES[name]) + 10))
            settle_sessions(ledger, world.pile_no, world.wallet_id, 1)
        for relay in relays.values():
            wait_for(relay.caught_up)
    finally:
        for name, relay in relays.items():
            stop_relay(relay, threads[name])
    messages = asyncio.run(read_stream(nats_url))

    expected = {}
    for name, ledger in two_shards.ledgers.items():
        assert relays[name].ledger_id.startswith(f"{name}.")
        for application in ledger.applications:
            for n in application.recorder.select_notifications(None, 1_000_000):
                expected[message_id(relays[name].ledger_id, application.name, n.id)] = (
                    subject_for(application.name, n.topic, name), n.state)
    ids = [m.headers["Nats-Msg-Id"] for m in messages]
    assert not [i for i, c in Counter(ids).items() if c > 1], "an event arrived twice"
    assert set(ids) == set(expected), f"{len(set(expected) - set(ids))} events lost"
    for m in messages:
        assert (m.subject, m.data) == expected[m.headers["Nats-Msg-Id"]]
    by_shard = Counter(m.subject.split(".")[1] for m in messages)
    assert set(by_shard) == {"s1", "s2"} and by_shard["s1"] > 0 and by_shard["s2"] > 0

    # a relay restarted on s1 finds its own last events on the stream: nothing published again
    again = Relay(two_shards.ledgers["s1"].applications, two_shards.env("s1"), nats_url, shard="s1")
    thread = run_relay(again)
    try:
        wait_for(lambda: again.is_leader and again.caught_up())
    finally:
        stop_relay(again, thread)
    assert again.published == 0
    assert len(asyncio.run(read_stream(nats_url))) == len(messages)


def test_projections_and_the_audit_run_per_shard(two_shards: TwoShards) -> None:  # noqa: F811
    trades = charge_both(two_shards, count=2)
    for name, ledger in two_shards.ledgers.items():
        projections = Projections(ledger.applications, two_shards.env(name))
        try:
            projections.catch_up()
        finally:
            projections.close()
        with psycopg.connect(two_shards.url(name)) as conn:
            rows = conn.execute("SELECT trade_no, state FROM orders ORDER BY trade_no").fetchall()
        assert rows == [(t, "finished") for t in sorted(trades[name])]  # this shard's sessions, none of the other's
        report = replay(two_shards.url(name))
        assert report.ok, report.differences
        assert report.counts["sessions"] == 2


def test_the_roles_take_their_shard_from_the_map(two_shards: TwoShards, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                 capsys: pytest.CaptureFixture[str], nats_url: str) -> None:
    charge_both(two_shards, count=1)
    monkeypatch.setenv("CHARGELEDGER_SHARDS", ",".join(f"{n}={u}" for n, u in two_shards.map.urls.items()))
    monkeypatch.setenv("DATABASE_URL", two_shards.url("s1"))  # configured servers: nothing embedded is started
    monkeypatch.setenv("NATS_URL", nats_url)
    monkeypatch.delenv("CHARGELEDGER_SHARD", raising=False)
    for name in ("s1", "s2"):
        assert cli.main(["audit", "--shard", name, "replay", "--quiet"]) == 0
        out = capsys.readouterr().out
        assert "no differences" in out and "sessions 1 " in out, out  # its shard's one session, not both
        assert cli.main(["projections", "--shard", name, "rebuild"]) == 0
        with psycopg.connect(two_shards.url(name)) as conn:
            assert conn.execute("SELECT pile_no FROM orders").fetchall() == [(PILES[name],)]
    with pytest.raises(SystemExit, match="name the shard"):
        cli.main(["audit", "replay"])
    with pytest.raises(SystemExit, match="the shards are s1, s2"):
        cli.main(["audit", "--shard", "s3", "replay"])
