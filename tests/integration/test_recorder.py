"""The event recorder (adapters/postgres/recorder.py) on Postgres: one round trip per save, same guarantees.

Each writer here has its own recorder and connection pool, as separate processes would.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.persistence import InfrastructureFactory, IntegrityError, StoredEvent
from eventsourcing.utils import Environment

from adapters.postgres.env import eventsourcing_env
from adapters.postgres.recorder import LockedInsertRecorder

WRITERS = 4
SAVES_PER_WRITER = 60


def make_recorder(database_url: str, name: str = "Sessions") -> LockedInsertRecorder:
    factory = InfrastructureFactory.construct(Environment(name, eventsourcing_env(database_url)))
    recorder = factory.application_recorder()
    assert isinstance(recorder, LockedInsertRecorder)
    return recorder


def event(originator: uuid.UUID, version: int, state: bytes = b"{}") -> StoredEvent:
    return StoredEvent(originator_id=originator, originator_version=version, topic="test:Event", state=state)


@pytest.fixture
def recorder(database_url: str) -> Iterator[LockedInsertRecorder]:
    r = make_recorder(database_url)
    yield r
    r.datastore.close()


def test_a_save_returns_its_notification_ids_and_one_query_finds_what_moved(recorder: LockedInsertRecorder) -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert recorder.insert_events([event(a, 1), event(a, 2), event(b, 1)]) == [1, 2, 3]
    assert recorder.insert_events([event(b, 2)]) == [4]
    moved = recorder.select_events_after({a: 1, b: 2, c: 0})
    assert [(e.originator_id, e.originator_version) for e in moved] == [(a, 2)]
    assert [n.id for n in recorder.select_notifications(start=1, limit=10)] == [1, 2, 3, 4]


def test_many_aggregates_are_brought_forward_in_one_query(recorder: LockedInsertRecorder) -> None:
    ids = [uuid.uuid4() for _ in range(3 * LockedInsertRecorder.FEW)]
    recorder.insert_events([event(i, v) for i in ids for v in (1, 2)])
    held = {i: (1 if n % 3 else 2) for n, i in enumerate(ids)}  # a third already hold version 2
    moved = recorder.select_events_after(held)
    assert sorted((e.originator_id, e.originator_version) for e in moved) == sorted(
        (i, 2) for i, v in held.items() if v == 1)
    assert len(recorder.select_events_after(held, first_only=True)) == 1
    assert recorder.select_events_after({i: 2 for i in ids}) == []


def test_every_byte_and_character_round_trips_through_client_side_binding(recorder: LockedInsertRecorder) -> None:
    a = uuid.uuid4()
    state = bytes(range(256)) + b"'; DROP TABLE x; -- %s %(n)s \\x00"
    topic = "domain.odd:Name'With\"Quotes%s;--\\ 电桩"
    recorder.insert_events([StoredEvent(a, 1, topic, state), StoredEvent(a, 2, topic, b"")])
    stored = recorder.select_events(a)
    assert [(e.topic, e.state) for e in stored] == [(topic, state), (topic, b"")]


def test_a_stale_write_is_refused_and_nothing_of_its_transaction_is_kept(recorder: LockedInsertRecorder) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    recorder.insert_events([event(a, 1)])
    with pytest.raises(IntegrityError):  # b's new event and a's stale version 1 in one save
        recorder.insert_events([event(b, 1), event(a, 1, b'{"other": 1}')])
    assert recorder.select_events(b) == []
    assert [e.state for e in recorder.select_events(a)] == [b"{}"]
    # the connection is usable again and the next save commits
    assert len(recorder.insert_events([event(b, 1)])) == 1


def test_a_save_waits_for_another_transaction_writing_the_table(recorder: LockedInsertRecorder,
                                                                database_url: str) -> None:
    """A plain INSERT in flight (ROW EXCLUSIVE) would not hold up another INSERT; it holds up our save."""
    recorder.insert_events([event(uuid.uuid4(), 1)])  # the table exists
    done = threading.Event()
    with psycopg.connect(database_url) as other:
        other.execute("LOCK TABLE sessions_events IN ROW EXCLUSIVE MODE")
        writer = threading.Thread(target=lambda: (recorder.insert_events([event(uuid.uuid4(), 1)]), done.set()))
        writer.start()
        time.sleep(0.5)
        assert not done.is_set(), "the save did not take the EXCLUSIVE table lock"
        other.rollback()
    writer.join(10)
    assert done.is_set()


def test_concurrent_writers_commit_in_notification_order_so_a_follower_never_skips(database_url: str) -> None:
    """Writers race while a follower reads the log after the last id it saw, as the relay does.

    If ids could commit out of order, the follower would pass over an id that commits later and
    never see it; here it must see every event exactly once, and the ids have no gaps.
    """
    recorders = [make_recorder(database_url) for _ in range(WRITERS + 1)]
    follower_recorder = recorders.pop()
    recorders[0].insert_events([event(uuid.uuid4(), 1)])
    writing = threading.Event()
    writing.set()
    seen: list[int] = []
    errors: list[BaseException] = []

    def follow() -> None:
        position = 0
        try:
            while writing.is_set() or position < (follower_recorder.max_notification_id() or 0):
                for n in follower_recorder.select_notifications(start=position + 1, limit=50):
                    seen.append(n.id)
                    position = n.id
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    def write(r: LockedInsertRecorder) -> None:
        try:
            originator = uuid.uuid4()
            for version in range(1, SAVES_PER_WRITER + 1):
                # some saves carry two aggregates' events, like a batch of readings
                batch = [event(originator, version)] + ([event(uuid.uuid4(), 1)] if version % 5 == 0 else [])
                r.insert_events(batch)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    follower = threading.Thread(target=follow)
    writers = [threading.Thread(target=write, args=(r,)) for r in recorders]
    follower.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    writing.clear()
    follower.join()
    for r in [*recorders, follower_recorder]:
        r.datastore.close()

    assert not errors, errors
    total = 1 + WRITERS * (SAVES_PER_WRITER + SAVES_PER_WRITER // 5)
    assert seen == list(range(1, total + 1))  # every id, once, in order, none skipped, no gaps


def test_two_tables_are_brought_forward_in_one_query(database_url: str) -> None:
    sessions, wallets = make_recorder(database_url, "Sessions"), make_recorder(database_url, "Wallets")
    try:
        a, b, w, unseen = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        sessions.insert_events([event(a, 1), event(a, 2), event(a, 3), event(b, 1)])
        wallets.insert_events([event(w, 1), event(w, 2)])
        moved = sessions.select_events_after_with([(sessions, {a: 1, b: 1}), (wallets, {w: 1, unseen: 0})])
        assert moved is not None
        assert [[(e.originator_id, e.originator_version) for e in part] for part in moved] == [
            [(a, 2), (a, 3)], [(w, 2)]]
        assert sessions.select_events_after_with([(sessions, {}), (wallets, {w: 2})]) == [[], []]
        too_many = {uuid.uuid4(): 0 for _ in range(LockedInsertRecorder.FEW + 1)}
        assert sessions.select_events_after_with([(sessions, too_many), (wallets, {w: 1})]) is None
    finally:
        sessions.datastore.close()
        wallets.datastore.close()


def test_processes_starting_together_on_an_empty_database_all_start(servers: tuple[str, str]) -> None:
    """Each Ledger creates its tables and save functions at start; several at once must not collide."""
    from adapters.servers.postgres_server import create_database
    from domain.ledger import Ledger

    url = create_database(servers[0], f"t_start_{uuid.uuid4().hex[:8]}")
    barrier, ledgers, errors = threading.Barrier(3), [], []

    def start() -> None:
        barrier.wait()
        try:
            ledgers.append(Ledger(eventsourcing_env(url)))
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and len(ledgers) == 3
        tenant = ledgers[0].create_tenant("T", "admin")
        assert ledgers[2].registry.tenant(tenant).name == "T"
    finally:
        for led in ledgers:
            led.close()
        with psycopg.connect(servers[0], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[-1]}" WITH (FORCE)')
