"""Issue 15's first must-show: a local cluster, ``chargeledger cluster up --shards 2 --gateways 2 --api 2
--standbys`` (supervisord running 2 gateways that serve both shards, 2 API workers, per shard two relays,
two projections and two watchdogs, 3 NATS nodes, Postgres with its replica), a fleet charging on both
shards, and, in turn:

1. kill -9 of a gateway holding piles: its piles reconnect through the balancer (``Balancer``: round
   robin, a backend whose links died kept out, as a passive health check does) to the other gateway and
   charge on there; the stops asked after the move reach them there;
2. kill -9 of each shard's leading relay and projections (the holders of their advisory locks, found in
   ``pg_locks``/``pg_stat_activity`` as docs/operations.md says) and of one of its watchdogs: the standbys
   take the locks; starts asked meanwhile reach the piles, start deadlines falling due are applied, each
   once;
3. kill -9 of the NATS node leading the stream while every driver stops: nothing is lost.

supervisord restarts each killed program (it comes back as a standby). The fleet is then drained
(``simulate --drain``: exit 0 = every record confirmed) and each shard checked (``check_shard``): every
session terminal and each finished one settled once, every hold closed, the trial balance 0, the stream
the shard's notification logs one for one, one order row per session, ``chargeledger audit --shard S
replay`` 0 differences. Times are printed (``CLUSTER <measure> <seconds>``).

Drivers start and stop through the driver API (api-1 and api-2 in turn), with tokens signed by the
cluster's key as a login gives them; the tenants, stations, tariffs and piles are made through the
operator API; wallets are topped up in cash at the counter (the ledger of the tenant's shard).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from adapters.followers.relay.leader import RELAY_LOCK
from adapters.postgres.leader_lock import PROJECTIONS_LOCK
from adapters.servers.processes import accepts_tcp
from tests.cluster import ROOT, wait_for
from tests.e2e.cluster_faults_deployment import (GUNS, PILES, FIRST_PILE, Balancer, Driver, LocalCluster, Shard,
                                                  at_database, check_shard, holder, lock_holder, open_platform,
                                                  ready, session)
from tests.e2e.relay_harness import CLI, Processes

SHARDS = 2


@dataclass
class Deployment:
    cluster: LocalCluster
    shards: dict[str, Shard]
    apis: list[httpx.Client]
    balancer: Balancer
    own: Processes  # the test's own processes: the fleet

    def drivers(self, gun_no: int) -> list[Driver]:
        return [d for s in self.shards.values() for d in s.drivers if d.gun_no == gun_no]


def figure(measure: str, seconds: float) -> None:
    print(f"CLUSTER {measure} {seconds:.2f}", flush=True)


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    base = ROOT / "var" / "test"  # not pytest's tmp_path (0700): the embedded Postgres may run as its own user
    base.mkdir(parents=True, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="cluster-faults-", dir=base)
    cluster = LocalCluster(ROOT / directory)
    (cluster.directory / "own").mkdir()
    own = Processes(cluster.directory / "own", {**os.environ, "LOG_LEVEL": "INFO",
                                               "CHARGELEDGER_VAR": str(cluster.directory / "own" / "var")})
    apis: list[httpx.Client] = []
    shards: dict[str, Shard] = {}
    try:
        cluster.up(SHARDS)
        apis.extend(httpx.Client(base_url=url, timeout=10) for url in cluster.apis())
        shards.update(open_platform(cluster, apis[0]))
        assert cluster.programs("gateway-") == ["gateway-1", "gateway-2"]  # every gateway serves both shards
        wait_for(lambda: all(accepts_tcp(port) for port in cluster.layout.gateways), 60, "both gateways listening")
        with Balancer(list(cluster.layout.gateways)) as balancer:
            own.start("simulate", "-c", CLI, "simulate", "--port", str(balancer.port),
                      "--piles", str(PILES * SHARDS), "--guns", str(GUNS), "--first-pile", FIRST_PILE, "--plugged",
                      "--speed", "30", "--heartbeat", "2", "--record-retry", "1", "--drain", "--drain-timeout", "90",
                      "--progress", "1000")
            wait_for(lambda: all(ready(s) for s in shards.values()), 90, "every simulated gun ready on both shards")
            yield Deployment(cluster, shards, apis, balancer, own)
    finally:
        for http in apis:
            http.close()
        own.stop_all()
        for shard in shards.values():
            shard.ledger.close()
        trouble = cluster.down()  # test_cluster.py checks that down leaves nothing; here it only has to run
        if trouble:
            print(f"cluster down: {trouble}")
        if not os.environ.get("CHARGELEDGER_FAULT_KEEP"):  # set it to keep the programs' logs for a look
            shutil.rmtree(cluster.directory, ignore_errors=True)


# ---- what drivers do, through the API workers in turn ---------------------------------------------------
def start(d: Deployment, drivers: list[Driver], key: str) -> list[str]:
    """Each driver starts on their gun (a retry with the same Idempotency-Key while the API answers 409/503);
    returns the trade numbers once every session charges."""
    trades = []
    for i, driver in enumerate(drivers):
        http, answer = d.apis[i % len(d.apis)], []

        def accepted() -> bool:
            r = http.post("/driver/sessions", headers={**driver.headers, "Idempotency-Key": f"start-{key}-{i:02d}"},
                          json={"pile_no": driver.pile_no, "gun_no": driver.gun_no})
            assert r.status_code in (202, 409, 503), r.text
            answer.append(r)
            return r.status_code == 202

        wait_for(accepted, 60, f"start {key}-{i} accepted", poll=0.2)
        trades.append(answer[-1].json()["trade_no"])
        d.shards[driver.shard].trades.add(trades[-1])
    by_trade = {t: d.shards[drv.shard] for t, drv in zip(trades, drivers)}
    wait_for(lambda: all(session(s, t).state == "charging" for t, s in by_trade.items()), 60, f"{key}: charging")
    return trades


def stop(d: Deployment, drivers: list[Driver], trades: list[str]) -> None:
    """Each driver asks to stop (202); waits until every session is terminal: finished by its pile's record."""
    for i, (driver, trade_no) in enumerate(zip(drivers, trades)):
        r = d.apis[i % len(d.apis)].post(f"/driver/sessions/{trade_no}/stop", headers=driver.headers)
        assert r.status_code == 202, r.text
    wait_for(lambda: all(not session(d.shards[drv.shard], t).is_open for drv, t in zip(drivers, trades)), 90,
             "every stopped session terminal")
    assert {session(d.shards[drv.shard], t).state for drv, t in zip(drivers, trades)} == {"finished"}


def due_starts(shard: Shard) -> list[str]:
    """An operator's starts on the silent pile 100 s ago: their 90 s start deadline is already due."""
    trades = [shard.ledger.request_start(pile_no=shard.silent_pile, gun_no=g, wallet_id=shard.ops_wallet,
                                         hold_fen=10_00, at=datetime.now(UTC) - timedelta(seconds=100), author="ops")
              for g in range(1, GUNS + 1)]
    shard.trades.update(trades)
    return trades


# ---- the faults ---------------------------------------------------------------------------------------
def kill_a_gateway(d: Deployment, charging: list[str]) -> None:
    """kill -9 gateway-1: every pile it held (on either shard) reconnects to gateway-2 and charges on."""
    c, shards = d.cluster, d.shards.values()
    victim, survivor = c.pid("gateway-1"), c.pid("gateway-2")
    held = {s.name: [p for p in s.piles if holder(s, p) == victim] for s in shards}
    assert sum(map(len, held.values())), f"gateway-1 holds no pile; the balancer marked down: {d.balancer.marked}"
    c.kill9(victim)
    killed = time.monotonic()
    wait_for(lambda: all(holder(s, p) == survivor for s in shards for p in s.piles), 90,
             "every pile held by gateway-2")
    figure("gateway kill -9: its piles on the other gateway after", time.monotonic() - killed)
    print(f"gateway-1 held {', '.join(f'{len(v)} piles of {k}' for k, v in held.items())}")
    assert all(session(d.shards[drv.shard], t).state == "charging" for drv, t in zip(d.drivers(1), charging))


def kill_the_leaders(d: Deployment) -> list[str]:
    """Per shard, kill -9 of the leading relay and projections (the holders of their locks, each one of the
    two programs ``--standbys`` runs) and of one of its two watchdogs. Meanwhile starts are asked (their
    commands go out through the relays that take over) and start deadlines fall due (the watchdogs')."""
    c = d.cluster
    victims, standbys = [], {}
    for shard in c.shards:
        url = c.url(shard)
        for role, key in (("relay", RELAY_LOCK), ("projections", PROJECTIONS_LOCK)):
            pids = [c.pid(f"{role}-{shard}"), c.pid(f"{role}-{shard}-2")]
            wait_for(lambda: lock_holder(url, key) in pids, 30, f"{shard}: one {role} leads")
            leader = lock_holder(url, key)
            standby = next(p for p in pids if p != leader)
            wait_for(lambda: at_database(url, f"chargeledger {role} {standby}"), 30, f"{shard}: the {role} standby")
            victims.append(leader)
            standbys[role, shard] = standby
        victims.append(c.pid(f"watchdog-{shard}"))
    for pid in victims:
        c.kill9(pid)
    killed = time.monotonic()
    due = {s.name: due_starts(s) for s in d.shards.values()}
    second = start(d, d.drivers(2), "after-the-leaders")
    for (role, shard), standby in standbys.items():
        key = RELAY_LOCK if role == "relay" else PROJECTIONS_LOCK
        wait_for(lambda: lock_holder(c.url(shard), key) == standby, 30, f"{shard}: the standby {role} leading")
    figure("relays and projections kill -9: standbys leading, starts charging after", time.monotonic() - killed)
    wait_for(lambda: all(session(d.shards[s], t).state == "failed" for s, ts in due.items() for t in ts), 60,
             "every due start deadline applied")
    figure("watchdogs kill -9: due deadlines applied after", time.monotonic() - killed)
    return second


def kill_a_nats_node(d: Deployment, drivers: list[Driver], trades: list[str]) -> None:
    """kill -9 of the node leading the stream, then every driver stops: every stop settles."""
    c = d.cluster
    node = c.stream_leader_program()
    c.kill9(c.pid(node))
    killed = time.monotonic()
    stop(d, drivers, trades)
    figure(f"NATS {node} (the stream's leader) kill -9: every stop settled after", time.monotonic() - killed)


@pytest.mark.timeout(600)
def test_two_shards_through_a_gateway_the_leaders_and_a_nats_node_killed(deployment: Deployment) -> None:
    d = deployment
    first = start(d, d.drivers(1), "first")  # gun 1 of every pile, both shards
    kill_a_gateway(d, first)
    moved = d.drivers(1)[::2]
    stop(d, moved, first[::2])  # asked after the move: they reach the piles through gateway-2
    second = kill_the_leaders(d)
    kill_a_nats_node(d, d.drivers(1)[1::2] + d.drivers(2), first[1::2] + second)

    simulate = next(p for p in d.own.running if p.name == "simulate")  # type: ignore[attr-defined]
    simulate.send_signal(signal.SIGTERM)
    assert simulate.wait(120) == 0, d.own.log(simulate)
    for shard in d.shards.values():
        print(check_shard(d.cluster, shard))
    assert all(d.cluster.pid(p) for p in d.cluster.programs(""))  # every program RUNNING (restarted ones too)
