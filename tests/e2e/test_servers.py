"""The embedded servers really start, serve, stop and keep their data across restarts."""

import asyncio
import os
import signal
from urllib.parse import urlsplit

import nats
import psutil
import psycopg
import pytest
from nats.js.api import StorageType

from adapters.servers.nats_server import EmbeddedNats
from adapters.servers.postgres_server import EmbeddedPostgres, create_database
from adapters.servers.resolve import resolve_servers


@pytest.fixture
def pg(tmp_path):
    server = EmbeddedPostgres(tmp_path / "postgres")
    yield server.start()
    server.stop()


@pytest.fixture
def nats_server(tmp_path):
    server = EmbeddedNats(tmp_path / "nats")
    yield server.start()
    server.stop()


def select_one(url: str) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute("select 1").fetchone()[0]


# -- Postgres ----------------------------------------------------------------


def test_postgres_serves_tcp_with_durable_settings(pg):
    assert pg.running()
    assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    assert select_one(pg.url) == 1
    with psycopg.connect(pg.url) as conn:
        settings = dict(conn.execute(
            "select name, setting from pg_settings where name = any(%s)",
            (["fsync", "listen_addresses", "unix_socket_directories", "max_connections"],),
        ).fetchall())
    assert settings == {"fsync": "on", "listen_addresses": "127.0.0.1",
                        "unix_socket_directories": "", "max_connections": "200"}


def test_postgres_max_connections_is_the_starters(pg):
    """A bench that runs every role twice on two shards starts the server with room for their pools."""
    pg.stop()
    roomier = EmbeddedPostgres(pg.data_dir, port=pg.port, max_connections=420).start()
    try:
        with psycopg.connect(roomier.url) as conn:
            assert conn.execute("show max_connections").fetchone() == ("420",)
    finally:
        roomier.stop()


def test_create_database_replaces_existing(pg):
    url = create_database(pg.url, "ledger_test")
    assert url == f"postgresql://postgres@127.0.0.1:{pg.port}/ledger_test"
    with psycopg.connect(url) as conn:
        conn.execute("create table leftover (id int)")
    # A second call drops it, even while a session is still connected.
    with psycopg.connect(url):
        assert create_database(pg.url, "ledger_test") == url
    with psycopg.connect(url) as conn:
        assert conn.execute("select to_regclass('leftover')").fetchone() == (None,)


def test_postgres_restart_keeps_data_and_port(pg):
    with psycopg.connect(pg.url) as conn:
        conn.execute("create table kept (v text)")
        conn.execute("insert into kept values ('still here')")
    port = pg.port
    pg.stop()
    assert not pg.running()
    pg.stop()  # idempotent
    pg.start()
    assert pg.port == port
    with psycopg.connect(pg.url) as conn:
        assert conn.execute("select v from kept").fetchall() == [("still here",)]


def test_postgres_start_after_crash(pg):
    with psycopg.connect(pg.url) as conn:
        conn.execute("create table crashed (v int)")
        conn.execute("insert into crashed values (42)")
    postmaster = psutil.Process(pg._postmaster()["pid"])
    children = postmaster.children()
    postmaster.send_signal(signal.SIGKILL)
    psutil.wait_procs([postmaster, *children], timeout=10)
    assert not pg.running()
    assert (pg.data_dir / "postmaster.pid").exists()  # stale lock file left behind
    pg.start()
    with psycopg.connect(pg.url) as conn:
        assert conn.execute("select v from crashed").fetchall() == [(42,)]


def test_postgres_stale_pid_reused_by_another_process(pg):
    pg.stop()
    # After a container restart the recorded pid may belong to anything, e.g. us.
    (pg.data_dir / "postmaster.pid").write_text(f"{os.getpid()}\n{pg.data_dir}\n")
    pg.start()
    assert select_one(pg.url) == 1


def test_postgres_adopts_server_left_running(pg):
    later = EmbeddedPostgres(pg.data_dir)  # e.g. the next `make demo`, new port chosen
    assert later.port != pg.port
    later.start()
    assert later.port == pg.port
    assert select_one(later.url) == 1
    later.stop()
    assert not pg.running()


# -- NATS --------------------------------------------------------------------


async def publish(url: str, count: int) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="LEDGER", subjects=["ledger.>"], storage=StorageType.FILE)
        for i in range(count):
            ack = await js.publish("ledger.events", f"event {i}".encode())
            assert ack.stream == "LEDGER" and ack.seq == i + 1
    finally:
        await nc.close()


async def read_all(url: str) -> list[bytes]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("LEDGER")
        return [(await js.get_msg("LEDGER", seq)).data for seq in range(1, info.state.messages + 1)]
    finally:
        await nc.close()


def test_nats_jetstream_publish_and_ack(nats_server):
    assert nats_server.running()
    url = urlsplit(nats_server.url)
    assert (url.scheme, url.hostname, url.port, url.username) == ("nats", "127.0.0.1", nats_server.port, "admin")
    asyncio.run(publish(nats_server.url, 3))
    assert asyncio.run(read_all(nats_server.url)) == [b"event 0", b"event 1", b"event 2"]


def test_nats_restart_keeps_stream_and_port(nats_server):
    asyncio.run(publish(nats_server.url, 5))
    port = nats_server.port
    nats_server.stop()
    assert not nats_server.running()
    nats_server.stop()  # idempotent
    nats_server.start()
    assert nats_server.port == port
    assert asyncio.run(read_all(nats_server.url)) == [f"event {i}".encode() for i in range(5)]


def test_nats_start_after_crash(nats_server):
    asyncio.run(publish(nats_server.url, 2))
    psutil.Process(nats_server._proc.pid).send_signal(signal.SIGKILL)
    nats_server._proc.wait(10)
    assert not nats_server.running()
    nats_server.start()
    assert asyncio.run(read_all(nats_server.url)) == [b"event 0", b"event 1"]


def test_nats_found_and_stopped_by_a_later_process(nats_server):
    later = EmbeddedNats(nats_server.data_dir)
    assert later.running()
    later.start()
    assert later.port == nats_server.port
    later.stop()
    assert not later.running()
    assert not nats_server.running()


# -- resolve_servers -----------------------------------------------------------


def test_resolve_servers_prefers_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    monkeypatch.setenv("NATS_URL", "nats://elsewhere:4222")
    assert resolve_servers(tmp_path) == ("postgresql://elsewhere/db", "nats://elsewhere:4222", [])
    assert not (tmp_path / "postgres").exists()


def test_resolve_servers_starts_embedded(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("NATS_URL", raising=False)
    database_url, nats_url, started = resolve_servers(tmp_path / "var")
    try:
        assert [type(s) for s in started] == [EmbeddedPostgres, EmbeddedNats]
        assert select_one(database_url) == 1
        asyncio.run(publish(nats_url, 1))
    finally:
        for server in started:
            server.stop()
    assert not any(server.running() for server in started)

