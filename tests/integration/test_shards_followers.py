"""The followers per shard (docs/shards.md): each shard's relay publishing into the one stream under its
own subjects and message ids, none colliding, two of them at once through full windows, each refused only
on its own guard; each shard's projections and audit on its own events, 0 differences; the roles'
``--shard`` choosing the database."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any


import psycopg
import pytest

import app as cli
from adapters.followers.relay.publisher import Relay
from adapters.followers.relay.stream import message_id, subject_for
from adapters.audit.replay import replay
from tests.factories import build_world
from tests.integration.shards_harness import TwoShards, catch_up, settle_sessions, two_shards  # noqa: F401 - the fixture
from tests.e2e.relay_harness import backlog
from tests.integration.test_relay import assert_stream_is_the_logs, cut_in, read_stream, wait_for

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


def meet_after_first_batch(relays: dict[str, Relay]) -> None:
    """Each relay, once it has published its first batch, waits until every other one has too: so both
    lead and publish at the same time, and each one's later batches go out after the other's first."""
    firsts = {name: threading.Event() for name in relays}
    for name, relay in relays.items():
        original = relay.relay_batch

        async def gated(window: Any, app: Any, lease: Any, name: str = name, original: Any = original) -> int:
            moved = await original(window, app, lease)
            if moved and not firsts[name].is_set():
                firsts[name].set()
                await asyncio.to_thread(lambda: all(first.wait(60) for first in firsts.values()))
            return moved
        relay.relay_batch = gated  # type: ignore[method-assign]


def test_two_shards_relays_publish_at_once_through_full_windows_each_guarded_on_its_own(
        two_shards: TwoShards, nats_url: str) -> None:  # noqa: F811
    """``main`` (a shard may keep that name, docs/shards.md) and ``s2`` relay a backlog each at the same
    time, windows of 100: every event once, each shard's in its logs' order, the stream interleaved, the
    windows full, and no window refused (``main`` used to expect the stream-wide last sequence, which
    ``s2``'s messages broke: refused, then stored out of order or lost). Then something publishes on
    ``s2``'s own subjects: ``s2``'s next window is refused and sent again, ``main``'s never."""
    shards = {"main": two_shards.ledgers["s1"], "s2": two_shards.ledgers["s2"]}
    envs = {"main": two_shards.env("s1"), "s2": two_shards.env("s2")}
    worlds = {name: build_world(ledger, pile_no=PILES["s1" if name == "main" else "s2"])
              for name, ledger in shards.items()}
    for name, ledger in shards.items():
        backlog(ledger, worlds[name], 2_000)
    relays = {name: Relay(ledger.applications, envs[name], nats_url, shard=name, window=100, batch_size=500)
              for name, ledger in shards.items()}
    meet_after_first_batch(relays)
    threads = {name: run_relay(relay) for name, relay in relays.items()}
    try:
        for relay in relays.values():
            wait_for(relay.caught_up, timeout=120)
        assert relays["main"].refused == relays["s2"].refused == 0

        # a stale leader of s2, say: on s2's subjects of Sessions
        cut_in(nats_url, "chargeledger.s2.Sessions.Other.Happened", "s2.another-ledger:Sessions:1")
        for name, ledger in shards.items():
            backlog(ledger, worlds[name], 300)
        for relay in relays.values():
            wait_for(relay.caught_up, timeout=120)
    finally:
        for name, relay in relays.items():
            stop_relay(relay, threads[name])
    assert relays["s2"].refused >= 1 and relays["main"].refused == 0
    messages = asyncio.run(read_stream(nats_url))
    shard_of = [next(name for name, r in relays.items() if m.headers["Nats-Msg-Id"].startswith(f"{r.ledger_id}:"))
                if m.headers["Nats-Msg-Id"] != "s2.another-ledger:Sessions:1" else None for m in messages]
    for name, ledger in shards.items():
        ours = [m for m, shard in zip(messages, shard_of) if shard == name]
        assert_stream_is_the_logs(ledger, relays[name].ledger_id, ours, shard=name)
        assert max(int(m.headers.get("Nats-Batch-Sequence", 1)) for m in ours) == 100  # full windows
    order = [shard for shard in shard_of if shard is not None]
    runs = 1 + sum(order[i] != order[i - 1] for i in range(1, len(order)))
    assert runs >= 3, "one shard's events never came between two of the other's: the relays did not publish at once"


def test_projections_and_the_audit_run_per_shard(two_shards: TwoShards) -> None:  # noqa: F811
    trades = charge_both(two_shards, count=2)
    catch_up(two_shards)
    for name in two_shards.ledgers:
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
