"""The metrics of running roles: a gateway with piles over TCP, the relay's lag, roles as processes
with --metrics-port (docs/operations.md, "Metrics and alarms to watch")."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from adapters.cli import observability
from adapters.followers.relay.publisher import Relay, keep_running
from adapters.metrics import logs
from adapters.metrics.instruments import REGISTRY
from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from pile_link.gateway import Gateway
from pile_link.ykc import Heartbeat, HeartbeatAck, RemoteStartReply
from pile_link.ykc.frame import encode_frame
from tests.e2e.gateway_harness import Clock, run, until
from tests.factories import build_world
from tests.ykc_pile import ScriptedPile

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys, app; sys.exit(app.main(sys.argv[1:]))"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(port: int) -> Samples:
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def frames(samples: Samples, direction: str, frame: str) -> float:
    return samples.get((f"chargeledger_frames_{direction}_total", (("frame", frame),)), 0.0)


def test_a_gateway_exposes_its_connected_piles_and_the_frames_it_read_and_wrote(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    world = build_world(ledger)
    numbers = [world.pile_no, "32010600019237", "32010600019238"]
    for pile_no in numbers[1:]:
        ledger.register_pile(world.station_id, pile_no, "DC", 2, "admin")

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        args = argparse.Namespace(metrics_port=0, metrics_host="127.0.0.1")
        with observability.serving(args, "gateway", database_url=database_url, nats_url=nats_url,
                                   collectors=observability.gateway_collectors(gateway)) as server:
            assert server is not None
            before = await asyncio.to_thread(scrape, server.port)
            assert before[("chargeledger_connected_piles", ())] == 0
            piles = [ScriptedPile(n) for n in numbers]
            for pile in piles:
                await pile.login(gateway.port)
            for pile in piles:
                for _ in range(2):
                    pile.send(Heartbeat(pile.pile_no, "01", 0))
                    await pile.expect(HeartbeatAck)
            piles[0].send_raw(encode_frame(0xEE, b"\x00" * 8, b"\x00\x09"))  # a type the codec has no class for
            await until(lambda: gateway.stats["bad_frames"] >= 1)
            after = await asyncio.to_thread(scrape, server.port)
            assert after[("chargeledger_connected_piles", ())] == 3
            assert after[("chargeledger_gateway_connections", ())] == 3
            assert frames(after, "in", "Login") - frames(before, "in", "Login") == 3
            assert frames(after, "in", "Heartbeat") - frames(before, "in", "Heartbeat") == 6
            assert frames(after, "out", "LoginAck") - frames(before, "out", "LoginAck") == 3
            assert frames(after, "out", "HeartbeatAck") - frames(before, "out", "HeartbeatAck") == 6
            code = after.get(("chargeledger_decode_errors_total", (("code", "unknown_type"),)), 0) - before.get(
                ("chargeledger_decode_errors_total", (("code", "unknown_type"),)), 0)
            assert code == 1 and frames(after, "in", "unknown") - frames(before, "in", "unknown") == 1
            handled = ("chargeledger_frame_handling_seconds_count", (("frame", "Heartbeat"),))
            assert after[handled] - before.get(handled, 0) == 6
            assert after[("chargeledger_gateway_events_total", (("event", "bad_frames"),))] == 1

            await piles[1].close()
            await until(lambda: len(gateway.links) == 2)
            assert (await asyncio.to_thread(scrape, server.port))[("chargeledger_connected_piles", ())] == 2
            status, body = await asyncio.to_thread(get, f"http://127.0.0.1:{server.port}/readyz")
            assert status == 200 and json.loads(body)["checks"] == {"database": {"ok": True, "detail": "ok"},
                                                                    "nats": {"ok": True, "detail": "ok"}}
            for pile in (piles[0], piles[2]):
                await pile.close()
        assert server.thread.is_alive() is False  # the exporter stopped with the role

    run(ledger, database_url, nats_url, scenario)
    names = {m.name for m in REGISTRY.collect()}
    assert "chargeledger_connected_piles" not in names  # the gateway's collectors left with it


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.addFilter(logs.ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_pile_link_logs_the_pile_the_session_and_the_tenant(ledger: Ledger, database_url: str,
                                                                nats_url: str) -> None:
    world = build_world(ledger)
    trade_no = f"{world.pile_no}01260101120000{'0' * 4}"
    kept, logger = Kept(), logging.getLogger("chargeledger.pile_link")

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile = ScriptedPile(world.pile_no)
        await pile.login(gateway.port)
        pile.send(Heartbeat(world.pile_no, "01", 0))  # after the login: the link knows the pile's tenant
        await pile.expect(HeartbeatAck)
        pile.send(RemoteStartReply(trade_no, world.pile_no, "01", 1, 0))  # a session the ledger never saw
        await until(lambda: any(trade_no in r.getMessage() for r in kept.records))
        with logs.bound(pile="P", session="S"):  # the thread pool runs a call in its caller's context
            assert await gateway.run(lambda: (logs.PILE.get(), logs.SESSION.get())) == ("P", "S")
        await pile.close()

    level = logger.level
    logger.addHandler(kept)
    logger.setLevel(logging.INFO)
    try:
        run(ledger, database_url, nats_url, scenario)
    finally:
        logger.removeHandler(kept)
        logger.setLevel(level)
    about = [r for r in kept.records if trade_no in r.getMessage()]
    assert about and all((r.pile, r.session, r.tenant) == (world.pile_no, trade_no, str(world.tenant_id))
                         for r in about), [(r.getMessage(), r.pile, r.session, r.tenant) for r in about]
    online = next(r for r in kept.records if r.getMessage().startswith(f"pile {world.pile_no} online"))
    assert (online.pile, online.session) == (world.pile_no, None)  # a login names no session


def test_the_relay_lag_is_what_is_committed_and_not_yet_on_the_stream(ledger: Ledger, database_url: str,
                                                                      nats_url: str) -> None:
    build_world(ledger)
    heads = {app.name: app.recorder.max_notification_id() or 0 for app in ledger.applications}
    relay = Relay(ledger.applications, eventsourcing_env(database_url), nats_url)
    args = argparse.Namespace(metrics_port=0, metrics_host="127.0.0.1")
    thread = threading.Thread(target=keep_running, args=(relay,), daemon=True)
    try:
        with observability.serving(args, "relay", database_url=database_url, nats_url=nats_url,
                                   state=lambda: {"leader": relay.is_leader},
                                   collectors=observability.relay_collectors(relay, ttl=0)) as server:
            assert server is not None
            idle = scrape(server.port)
            for app, head in heads.items():
                assert idle[("chargeledger_relay_lag", (("application", app),))] == head
            assert idle[("chargeledger_leader", (("role", "relay"),))] == 0
            assert json.loads(get(f"http://127.0.0.1:{server.port}/readyz")[1])["leader"] is False
            thread.start()
            deadline = time.monotonic() + 30
            while not (relay.is_leader and relay.caught_up()):
                assert time.monotonic() < deadline, "the relay did not catch up"
                time.sleep(0.05)
            running = scrape(server.port)
            assert {app: running[("chargeledger_relay_lag", (("application", app),))] for app in heads} == \
                dict.fromkeys(heads, 0)
            assert running[("chargeledger_relay_published_total", ())] == sum(heads.values())
            assert running[("chargeledger_leader", (("role", "relay"),))] == 1
            assert json.loads(get(f"http://127.0.0.1:{server.port}/readyz")[1])["leader"] is True
    finally:
        relay.stop()
        if thread.is_alive():
            thread.join(timeout=10)
        relay.close()


def test_a_role_process_serves_metrics_and_readiness_on_its_metrics_port(database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "CHARGELEDGER_VAR": str(tmp_path / "var"),
           "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json", "CHARGELEDGER_METRICS_PORT": "0"}
    env.pop("NATS_URL", None)
    proc = subprocess.Popen([sys.executable, "-c", CLI, "watchdog", "--interval", "60"], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        assert proc.stdout is not None
        for line in proc.stdout:  # "metrics on http://127.0.0.1:<port>/metrics (/healthz, /readyz)"
            if line.startswith("metrics on http://"):
                port = int(line.split(":")[2].split("/")[0])
                break
        assert port is not None, proc.stderr.read() if proc.stderr else ""
        status, body = get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200 and json.loads(body)["role"] == "watchdog"
        samples: dict[Any, float] = {}
        deadline = time.monotonic() + 30
        while ("chargeledger_open_sessions", ()) not in samples:  # until the watchdog has made its tables
            assert time.monotonic() < deadline, samples
            samples = scrape(port)
            time.sleep(0.1)
        assert samples[("chargeledger_role_info", (("role", "watchdog"),))] == 1
        assert samples[("chargeledger_metrics_source_up", (("source", "watchdog"),))] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0
