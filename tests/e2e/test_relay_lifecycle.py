"""A relay never dies silently and stops only what it started: an unexpected error is logged and the relay
goes on, its thread restarts a loop that ended, the gateway runs one unless told not to (``--no-relay``),
and Ctrl-C on a relay leaves running the servers ``chargeledger servers`` started (issue 11.8)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading

import nats
import nats.errors
import psycopg
import pytest

from adapters.servers.nats_users import RELAY
from adapters.postgres.env import eventsourcing_env
from adapters.followers.relay.publisher import Relay, keep_running
from domain.ledger import Ledger
from tests.factories import build_world
from tests.integration.test_relay import assert_stream_is_the_logs, charge_sessions, read_stream, wait_for
from tests.e2e.relay_harness import CLI, Processes, caught_up
from tests.e2e.relay_harness import processes  # noqa: F401  (the fixture)


# ---- a relay beside a gateway never dies silently ---------------------------------------------------------
def test_an_unexpected_error_in_the_relay_is_logged_and_the_relay_goes_on(
        ledger: Ledger, database_url: str, nats_url: str, nats_role_urls: dict[str, str],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.cli.relay import running_relay

    failures = iter([RuntimeError("a bug in a batch")])
    relay_batch = Relay.relay_batch

    async def failing_once(self: Relay, *args, **kwargs):  # type: ignore[no-untyped-def]
        error = next(failures, None)
        if error is not None:
            raise error
        return await relay_batch(self, *args, **kwargs)

    monkeypatch.setattr(Relay, "relay_batch", failing_once)
    world = build_world(ledger)
    with running_relay(ledger, database_url, nats_role_urls[RELAY]) as relay:
        charge_sessions(ledger, world, 2)
        wait_for(lambda: caught_up(ledger, database_url), timeout=60)
    assert any(r.exc_info and "a bug in a batch" in str(r.exc_info[1]) for r in caplog.records)
    assert relay.errors == 1
    assert_stream_is_the_logs(ledger, relay.ledger_id, asyncio.run(read_stream(nats_url)))


def test_the_relay_thread_restarts_a_relay_whose_loop_ended(
        ledger: Ledger, database_url: str, nats_url: str, nats_role_urls: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    relay = Relay(ledger.applications, eventsourcing_env(database_url), nats_role_urls[RELAY])
    run = relay.run
    ends: list[BaseException] = [asyncio.CancelledError()]

    async def ends_once() -> None:
        if ends:
            raise ends.pop()
        await run()

    relay.run = ends_once  # type: ignore[method-assign]
    thread = threading.Thread(target=keep_running, args=(relay, 0.1), daemon=True)
    thread.start()
    try:
        charge_sessions(ledger, build_world(ledger), 1)
        wait_for(lambda: caught_up(ledger, database_url), timeout=60)
        assert thread.is_alive()
    finally:
        relay.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert any("relay thread" in r.getMessage() and "restarting" in r.getMessage() for r in caplog.records)


def test_the_gateway_runs_a_relay_unless_told_not_to(
        database_url: str, nats_role_urls: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import adapters.cli.gateway
    import app

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("NATS_URL", nats_role_urls[RELAY])
    seen: list[bool] = []

    async def serve(*args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        seen.append(any(t.name == "relay" and t.is_alive() for t in threading.enumerate()))

    monkeypatch.setattr(adapters.cli.gateway, "serve", serve)  # the gateway command's own serving loop
    assert app.main(["gateway", "--port", "0"]) == 0
    assert app.main(["gateway", "--port", "0", "--no-relay"]) == 0
    assert seen == [True, False]


# ---- 11.8: a role stops only the servers it started ------------------------------------------------------
def printed(processes: Processes, proc: subprocess.Popen, prefix: str, suffix: str = "") -> str:
    """The value of the line ``<prefix><value><suffix>`` the process printed."""
    for line in processes.log(proc).splitlines():
        if line.startswith(prefix) and line.endswith(suffix):
            return line[len(prefix):len(line) - len(suffix)]
    raise AssertionError(f"{proc.name} printed no {prefix!r}:\n{processes.log(proc)}")  # type: ignore[attr-defined]


def nats_answers(url: str) -> bool:
    async def connect() -> bool:
        try:
            nc = await nats.connect(url, allow_reconnect=False, connect_timeout=5)
        except (nats.errors.Error, OSError):
            return False
        await nc.close()
        return True
    return asyncio.run(connect())


def has_table(database_url: str, table: str) -> bool:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def accepts(database_url: str) -> bool:
    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def test_a_relay_stopped_with_ctrl_c_leaves_running_the_servers_it_did_not_start(processes: Processes) -> None:
    """``chargeledger servers`` serves the embedded Postgres and NATS; ``chargeledger relay`` without
    DATABASE_URL / NATS_URL adopts them. Ctrl-C on the relay (SIGINT) stopped that Postgres; now
    both servers stay up, until Ctrl-C on ``chargeledger servers``, which started them, stops them."""
    servers = processes.start("servers", "-c", CLI, "servers")
    wait_for(lambda: "(Ctrl-C stops them)" in processes.log(servers) or servers.poll() is not None, timeout=180)
    processes.alive(servers)
    database_url = printed(processes, servers, "DATABASE_URL=")
    nats_admin = printed(processes, servers, "NATS_URL=", "  # admin")
    relay = processes.start("relay", "-c", CLI, "relay")
    wait_for(lambda: has_table(database_url, "relay_tracking") or relay.poll() is not None, timeout=120)  # running
    processes.alive(relay)
    relay.send_signal(signal.SIGINT)
    try:
        relay.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    assert accepts(database_url), "the relay stopped the Postgres `chargeledger servers` serves"
    assert nats_answers(nats_admin), "the relay stopped the NATS `chargeledger servers` serves"
    assert relay.poll() == 0, processes.log(relay)
    processes.alive(servers)
    servers.send_signal(signal.SIGINT)
    assert servers.wait(timeout=120) == 0, processes.log(servers)
    assert not accepts(database_url), "`chargeledger servers` stops the servers it started"
