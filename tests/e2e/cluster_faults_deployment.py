"""The deployment of tests/e2e/test_cluster_faults.py (issue 15, the first must-show): ``chargeledger cluster
up --shards 2`` (2 gateways serving every shard, 2 API workers, a relay, projections and watchdog per shard,
3 NATS nodes, Postgres and its replica, all under supervisord), a tenant on each shard set up through the
API as an operator would, drivers with wallets, a balancer in front of the gateways, and the checks a
shard must pass after the faults (``check_shard``).

What is read from ``cluster up``'s files (its interface to a test): ``cluster.json`` (``Layout``: the
shards' databases, the ports), ``nats/`` (``EmbeddedNatsCluster``: each role's NATS URL), ``secrets.json``
(the key API tokens are signed with) and supervisord's programs (``gateway-<i>``, ``<role>-<shard>``,
``nats-<i>``) through its XML-RPC socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import nats
import psutil
import psycopg
from nats.js.api import AckPolicy, ConsumerConfig

from adapters.postgres.leader_lock import holder_pid
from adapters.api.auth import AuthSettings, TokenSigner
from adapters.api.driver.identity import DriverTokens, driver_id_of
from adapters.cli.cluster import supervisor
from adapters.followers.log_follower import iter_events
from adapters.followers.relay.stream import message_id, qualified_ledger, subject_for, subject_prefix
from adapters.followers.watchdog import FOLLOWUP_GRACE
from adapters.payments.config import SecretBox
from adapters.postgres.env import eventsourcing_env
from adapters.servers.local_cluster import NATS_NODES, Layout
from adapters.servers.nats_cluster import EmbeddedNatsCluster
from adapters.servers.nats_users import ADMIN, STREAM, server_options
from domain.books import books_of
from domain.ledger import Ledger
from domain.registry import Pile
from domain.session import ChargingSession
from pile_link.simulator.fleet import pile_numbers
from projections.runner import Projections
from tests.cluster import ROOT, wait_for
from tests.e2e.test_gateway_fleet import Balancer as FirstAccepting
from tests.factories import PRICES, SLOTS

PILES, GUNS = 4, 2  # per shard; gun 1 of each charges first, gun 2 after the relays' takeover
FIRST_PILE = "99000000007001"
PASSWORD = "cluster faults passphrase"


def chargeledger(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL", "CHARGELEDGER_SHARDS")}
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**base, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=timeout, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


class LocalCluster:
    """``cluster up`` under ``directory``: its shards, URLs and supervisord's programs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def up(self, shards: int) -> None:
        driver_api = {"CHARGELEDGER_PAYMENT_KEYS": SecretBox.generate_setting("k1"),  # passed on to the API workers
                      "CHARGELEDGER_PUBLIC_URL": "http://127.0.0.1"}
        done = chargeledger("cluster", "up", "--dir", str(self.directory), "--shards", str(shards),
                            "--gateways", "2", "--api", "2", "--standbys", env=driver_api)
        assert done.returncode == 0, done.stdout + done.stderr
        layout = Layout.load(self.directory)
        assert layout is not None
        self.layout = layout
        self.nats = EmbeddedNatsCluster(self.directory / "nats", NATS_NODES)
        self.token_key = json.loads((self.directory / "secrets.json").read_text())["token_key"]

    def down(self) -> str:
        done = chargeledger("cluster", "down", "--dir", str(self.directory), timeout=120)
        return done.stdout + done.stderr if done.returncode else ""

    @property
    def shards(self) -> list[str]:
        return self.layout.shard_names

    def url(self, shard: str) -> str:
        return self.layout.database_url(shard)

    def apis(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.layout.apis]

    def programs(self, prefix: str) -> list[str]:
        return sorted(i["name"] for i in supervisor(self.directory).getAllProcessInfo() if i["name"].startswith(prefix))

    def pid(self, program: str) -> int:
        info = supervisor(self.directory).getProcessInfo(program)
        assert info["statename"] == "RUNNING", (program, info["statename"], self.log(program))
        return int(info["pid"])

    def log(self, program: str) -> str:
        return (self.directory / "logs" / f"{program}.log").read_text(errors="replace")[-3000:]

    def kill9(self, pid: int) -> None:
        """kill -9 (supervisord starts the program again: it comes back as one more standby)."""
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 30,
                 f"pid {pid} gone")

    def stream_leader_program(self) -> str:
        return f"nats-{self.nats.stream_leader().index + 1}"


lock_holder = holder_pid  # the pid leading by an advisory lock (adapters/postgres/leader_lock.py)


def at_database(database_url: str, application_name: str) -> bool:
    """Whether a session named ``application_name`` is open on the database (a standby trying its lock)."""
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND datname = "
                            "current_database()", (application_name,)).fetchone() is not None


class Balancer(FirstAccepting):
    """A TCP balancer on loopback in front of the gateways: round robin over the backends not marked down,
    and a backend that ends a link from its side (its process gone) is marked down for ``fail_timeout``
    seconds, as a balancer's passive health check does (nginx ``max_fails=1 fail_timeout=...``), tried
    only when no other backend accepts. The piles of a killed gateway therefore reconnect to the others,
    even once supervisord has restarted it."""

    def __init__(self, backends: list[int], fail_timeout: float = 600) -> None:
        super().__init__(backends)
        self.fail_timeout, self.turn = fail_timeout, 0
        self.down_until: dict[int, float] = {}
        self.marked: list[tuple[int, str]] = []  # (port, why): what a failure message shows

    def order(self) -> list[int]:
        up_now = [p for p in self.backends if self.down_until.get(p, 0) <= time.monotonic()]
        self.turn += 1
        turn = self.turn % len(up_now) if up_now else 0
        return up_now[turn:] + up_now[:turn] + [p for p in self.backends if p not in up_now]  # down: last

    def refused(self, port: int, error: OSError) -> None:
        self.mark_down(port, f"refused a connection ({error})")

    def ended(self, port: int) -> None:
        self.mark_down(port, "ended a link")

    def mark_down(self, port: int, why: str) -> None:
        self.down_until[port] = time.monotonic() + self.fail_timeout
        self.marked.append((port, why))


# ---- the platform: tenants, stations, piles, tariffs, drivers --------------------------------------------
@dataclass
class Driver:
    shard: str
    pile_no: str
    gun_no: int
    wallet_id: UUID
    headers: dict[str, str]


@dataclass
class Shard:
    name: str
    tenant_id: UUID
    ledger: Ledger
    piles: list[str]
    silent_pile: str  # registered, never connected: operators' starts on it are never answered
    ops_wallet: UUID
    drivers: list[Driver] = field(default_factory=list)
    trades: set[str] = field(default_factory=set)

    def wallets(self) -> list[UUID]:
        return [d.wallet_id for d in self.drivers] + [self.ops_wallet]


def signed_in(http: httpx.Client, username: str) -> dict[str, str]:
    r = http.post("/operator/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def created(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code in (200, 201), f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json()  # type: ignore[no-any-return]


def open_platform(cluster: LocalCluster, http: httpx.Client) -> dict[str, Shard]:
    """A platform admin (``chargeledger operators add``), then per shard a tenant placed there, its admin,
    a station with its tariff and piles, all through the API; drivers' wallets topped up in cash at the
    counter (the ledger of the tenant's shard) and their tokens signed with the API's key, as a login
    gives them."""
    added = chargeledger("operators", "add", "root", "--role", "platform_admin", stdin=PASSWORD + "\n",
                         env={"DATABASE_URL": cluster.layout.database_url()}, timeout=60)
    assert added.returncode == 0, added.stdout + added.stderr

    def answers() -> bool:
        try:
            r = http.post("/operator/v1/auth/token", json={"username": "root", "password": PASSWORD})
            return r.status_code == 200
        except httpx.HTTPError:
            return False  # the worker still starting

    wait_for(answers, 60, "the API signing in the platform admin")
    root = signed_in(http, "root")
    tokens = DriverTokens(TokenSigner(AuthSettings(cluster.token_key.encode(), timedelta(hours=8))))
    numbers = pile_numbers(FIRST_PILE, (PILES + 1) * len(cluster.shards))  # the fleet's, then the silent ones
    shards = {}
    for k, name in enumerate(cluster.shards):
        placed = created(http.post("/operator/v1/tenants", headers=root,
                                   json={"name": f"Tenant {name}", "shard": name}))
        assert placed["shard"] == name
        tenant = UUID(placed["tenant_id"])
        created(http.post("/operator/v1/users", headers=root, json={
            "username": f"admin-{name}", "password": PASSWORD, "role": "tenant_admin", "tenant_id": str(tenant)}))
        admin = signed_in(http, f"admin-{name}")
        station = created(http.post("/operator/v1/stations", headers=admin, json={
            "name": f"Cluster {name}", "address": "1 Fault Road", "latitude": 31.2, "longitude": 121.5}))["station_id"]
        tariff = created(http.post("/operator/v1/tariffs", headers=admin,
                                   json={"name": "standard", "prices": PRICES, "slots": SLOTS}))["tariff_id"]
        created(http.put(f"/operator/v1/stations/{station}/tariff", headers=admin, json={"tariff_id": tariff}))
        mine = numbers[k * PILES:(k + 1) * PILES] + [numbers[PILES * len(cluster.shards) + k]]
        for pile_no in mine:
            created(http.post(f"/operator/v1/stations/{station}/piles", headers=admin,
                              json={"pile_no": pile_no, "kind": "DC", "gun_count": GUNS}))
        ledger = Ledger(eventsourcing_env(cluster.url(name), pool_size=1, max_overflow=4))
        ops = ledger.open_wallet(tenant, "fleet-account", "admin")
        ledger.top_up(ops, key=f"topup:ops:{name}", amount=1000_00, provider="cash", payment_ref=f"ops-{name}")
        shard = Shard(name, tenant, ledger, mine[:-1], mine[-1], ops)
        for pile_no in shard.piles:
            for gun_no in range(1, GUNS + 1):
                driver_id = driver_id_of("wechat", "wx-main", f"o-{pile_no}-{gun_no}")
                wallet = ledger.open_wallet(tenant, driver_id, driver_id)
                ledger.top_up(wallet, key=f"topup:{driver_id}", amount=500_00, provider="cash",
                              payment_ref=f"counter-{driver_id}")
                token = tokens.issue(tenant, driver_id)[0]
                shard.drivers.append(Driver(name, pile_no, gun_no, wallet, {"Authorization": f"Bearer {token}"}))
        shards[name] = shard
    return shards


# ---- reading a shard's ledger ----------------------------------------------------------------------------
def session(shard: Shard, trade_no: str) -> ChargingSession:
    return shard.ledger.sessions.get(ChargingSession.create_id(trade_no), ChargingSession, "session", fresh=True)


def pile(shard: Shard, pile_no: str) -> Pile:
    return shard.ledger.registry.get(Pile.create_id(pile_no), Pile, "pile", fresh=True)


def holder(shard: Shard, pile_no: str) -> int | None:
    """The pid of the gateway the pile's connection names (``host:pid``); None: offline."""
    p = pile(shard, pile_no)
    return int(p.connection["gateway"].rsplit(":", 1)[-1]) if p.online and p.connection else None


def ready(shard: Shard) -> bool:
    return all(not pile(shard, p).not_ready_because(g) for p in shard.piles for g in range(1, GUNS + 1))


def session_ids(shard: Shard, url: str) -> list[UUID]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT originator_id FROM sessions_events WHERE originator_version = 1 AND topic LIKE %s",
            ("%ChargingSession%",))]


def heads(shard: Shard) -> dict[str, int]:
    return {app.name: app.recorder.max_notification_id() or 0 for app in shard.ledger.applications}


def relay_at(url: str, target: dict[str, int]) -> bool:
    with psycopg.connect(url) as conn:
        tracked = dict(conn.execute("SELECT application_name, notification_id FROM relay_tracking").fetchall())
    return all(tracked.get(name, 0) >= head for name, head in target.items())


def projections_at(shard: Shard, url: str, target: dict[str, int]) -> bool:
    with Projections(shard.ledger.applications, eventsourcing_env(url, pool_size=1)) as p:
        return all((p.position(name, app.name) or 0) >= target[app.name]
                   for app in shard.ledger.applications for name, recorder in p.recorders.items()
                   if app.name in recorder.view.follows())


def read_stream(cluster: LocalCluster) -> list[Any]:
    """Every message of the stream, through a consumer of one replica (placed on a live node)."""
    async def read() -> list[Any]:
        nc = await nats.connect(**server_options(cluster.nats.url_for(ADMIN)), connect_timeout=2)
        try:
            js = nc.jetstream(timeout=10)
            info = await js.stream_info(STREAM)
            sub = await js.pull_subscribe("chargeledger.>", durable=None, stream=STREAM, config=ConsumerConfig(
                ack_policy=AckPolicy.NONE, num_replicas=1, mem_storage=True))
            messages: list[Any] = []
            while len(messages) < info.state.messages:
                messages.extend(await sub.fetch(min(500, info.state.messages - len(messages)), timeout=10))
            return messages
        finally:
            await nc.close()
    return asyncio.run(read())


def assert_stream_is_the_shards_logs(shard: Shard, url: str, messages: list[Any]) -> int:
    """The stream's messages under the shard's subjects, one for one with its notification logs: each event
    once, its subject and bytes as stored, each Application's events in their log's order."""
    with psycopg.connect(url) as conn:
        ledger = qualified_ledger(conn.execute("SELECT id FROM ledger_identity").fetchone()[0], shard.name)
    expected = {}
    for app in shard.ledger.applications:
        for n in app.recorder.select_notifications(None, 1_000_000):
            expected[message_id(ledger, app.name, n.id)] = (subject_for(app.name, n.topic, shard.name), n.state)
    prefix = subject_prefix(shard.name) + "."
    mine = [m for m in messages if m.subject.startswith(prefix)]
    ids = [m.headers["Nats-Msg-Id"] for m in mine]
    repeated = sorted(i for i, count in Counter(ids).items() if count > 1)
    assert not repeated, f"{shard.name}: {len(ids) - len(set(ids))} events twice, e.g. {repeated[:5]}"
    assert set(ids) == set(expected), (f"{shard.name}: {len(set(expected) - set(ids))} events lost, "
                                       f"{len(set(ids) - set(expected))} not in the logs")
    order: dict[str, list[int]] = {}
    for m in mine:
        assert (m.subject, m.data) == expected[m.headers["Nats-Msg-Id"]]
        order.setdefault(m.headers["Chargeledger-Application"], []).append(
            int(m.headers["Chargeledger-Notification-Id"]))
    for application, numbers in order.items():
        assert numbers == sorted(numbers), f"{shard.name}: out of order in {application}"
    return len(mine)


# ---- after the faults ------------------------------------------------------------------------------------
def check_shard(cluster: LocalCluster, shard: Shard) -> str:
    """Every session terminal, each finished one settled once; holds closed; the trial balance 0; the stream
    the logs one for one; one order row per session; ``chargeledger audit --shard S replay``: 0 differences."""
    url = cluster.url(shard.name)
    ids = session_ids(shard, url)
    wait_for(lambda: all(not x.is_open for x in shard.ledger.sessions.get_all(
        *((i, ChargingSession, "session") for i in ids))), 60, f"{shard.name}: every session terminal")
    sessions = shard.ledger.sessions.get_all(*((i, ChargingSession, "session") for i in ids))
    assert {x.trade_no for x in sessions} >= shard.trades
    settled = Counter(e.originator_id for e in iter_events(shard.ledger.sessions) if type(e).__name__ == "Settled")
    assert all(n == 1 for n in settled.values()), f"{shard.name}: settled twice: {settled.most_common(3)}"
    finished = [x for x in sessions if x.state == "finished"]
    assert all(settled[x.id] == 1 for x in finished), f"{shard.name}: a finished session not settled"
    wait_for(lambda: not any(shard.ledger.wallet(w).held for w in shard.wallets()),
             FOLLOWUP_GRACE.total_seconds() + 30, f"{shard.name}: every hold closed")
    books = books_of(iter_events(shard.ledger.wallets))
    assert books.balanced and books.trial_balance == 0, f"{shard.name}: trial balance {books.trial_balance}"
    target = heads(shard)
    wait_for(lambda: relay_at(url, target), 60, f"{shard.name}: the relay caught up")
    on_stream = assert_stream_is_the_shards_logs(shard, url, read_stream(cluster))
    wait_for(lambda: projections_at(shard, url, target), 60, f"{shard.name}: the projections caught up")
    with psycopg.connect(url) as conn:
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    assert orders == len(sessions), (shard.name, orders, len(sessions))
    audit = chargeledger("audit", "--shard", shard.name, "replay", "--quiet",
                         env={"DATABASE_URL": cluster.layout.database_url(),
                              "CHARGELEDGER_SHARDS": cluster.layout.shard_map()}, timeout=120)
    assert audit.returncode == 0 and "no differences" in audit.stdout, audit.stdout + audit.stderr
    return (f"shard {shard.name}: {len(sessions)} sessions ({len(finished)} finished, settled once each), "
            f"{on_stream} events on the stream, audit 0 differences")
