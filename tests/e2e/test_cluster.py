"""``chargeledger cluster up|status|down`` (issue 15, items 1 and 5): a local deployment under supervisord in
a directory of its own. One shard (the default): the deployment as before shards, every program RUNNING,
the replica streaming, the three NATS nodes one JetStream cluster holding the relay's R3 stream. Two
shards: per shard a relay, projections and watchdog, a gateway for both, both shards' databases on the
primary and on the replica, both shards' relays' subjects on the stream, a tenant created on each shard
through a different API worker and both in the platform admin's merged list. ``down`` leaves no process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats
import psutil
import psycopg

from adapters.servers.local_cluster import Layout, nats_nodes
from adapters.servers.nats_users import ADMIN, STREAM, server_options

ROOT = Path(__file__).resolve().parents[2]


def chargeledger(*args: str, timeout: float = 150, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL", "CHARGELEDGER_SHARDS")}
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT,
                          env={**environ, **env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=timeout, input=stdin)


def processes_under(directory: Path) -> list[psutil.Process]:
    """Every live process whose command line names the directory (supervisord, servers, roles' configs)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + " ".join(
                f"{k}={v}" for k, v in (proc.info["environ"] or {}).items())
            if str(directory) in text and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            pass
    return found


def stream_subjects(admin_url: str) -> tuple[list[str], set[str]]:
    """The NATS nodes of the relays' stream (leader first) and the shards whose subjects it holds."""
    async def info() -> tuple[list[str], set[str]]:
        nc = await nats.connect(**server_options(admin_url), connect_timeout=2)
        try:
            stream = await nc.jetstream().stream_info(STREAM, subjects_filter="chargeledger.>")
            cluster = stream.cluster
            nodes = [cluster.leader, *(r.name for r in cluster.replicas or [])] if cluster else []
            return nodes, {subject.split(".")[1] for subject in (stream.state.subjects or {})}
        finally:
            await nc.close()
    return asyncio.run(info())


def eventually(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - a server still starting
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.5)


def healthy_status(directory: Path) -> list[str]:
    """``cluster status``'s lines once it exits 0 (every program RUNNING, every shard's leaders elected)."""
    statuses: list[subprocess.CompletedProcess[str]] = []
    eventually(lambda: statuses.append(chargeledger("cluster", "status", "--dir", str(directory)))
               or statuses[-1].returncode == 0, 60, "cluster status healthy")
    return statuses[-1].stdout.splitlines()


def programs_of(lines: list[str]) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in lines if not line.startswith(("replica", "shard "))}


def down_leaves_no_process(directory: Path) -> None:
    stopped = chargeledger("cluster", "down", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    left = processes_under(directory)
    for proc in left:  # nothing should be left; if it is, the test fails and the machine is cleaned
        proc.kill()
    assert not left, [" ".join(p.cmdline()) for p in left if p.is_running()]
    assert chargeledger("cluster", "status", "--dir", str(directory)).returncode == 1


def test_cluster_up_with_one_shard_is_the_deployment_before_shards(tmp_path: Path) -> None:
    directory = tmp_path / "cluster"
    try:
        started = chargeledger("cluster", "up", "--dir", str(directory), "--gateways", "2", "--api", "1")
        assert started.returncode == 0, started.stdout + started.stderr
        layout = Layout.load(directory)
        assert layout is not None and (layout.shard_names, len(layout.gateways), len(layout.apis)) == (["main"], 2, 1)
        assert "CHARGELEDGER_SHARDS" not in started.stdout
        lines = healthy_status(directory)
        programs = programs_of(lines)
        assert set(programs) == {"postgres-primary", "postgres-replica", "nats-1", "nats-2", "nats-3", "gateway-1",
                                 "gateway-2", "api-1", "relay", "projections", "watchdog"}
        assert set(programs.values()) == {"RUNNING"}
        assert [line.split(":")[0] for line in lines if line.startswith("shard ")] == ["shard main"]
        assert database_names(layout.database_url()) == {"chargeledger"}
        for port in layout.apis:  # an API worker answers, with the database behind it (a refused sign-in)
            eventually(lambda: httpx.post(f"http://127.0.0.1:{port}/operator/v1/auth/token", timeout=5,
                                          json={"username": "nobody", "password": "wrong"}).status_code == 401,
                       60, f"the API on {port} answering")
        eventually(lambda: len(stream_subjects(nats_nodes(directory).url_for(ADMIN))[0]) == 3, 60,
                   "the relay's R3 stream on the NATS cluster")
        # the relay's first write, replicated
        with psycopg.connect(layout.database_url(replica=True), autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            eventually(lambda: conn.execute("SELECT count(*) FROM ledger_identity").fetchone() == (1,), 30,
                       "the ledger's identity on the replica")
    finally:
        down_leaves_no_process(directory)


def database_names(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'chargeledger%'")}


def test_cluster_up_with_two_shards_runs_every_program_and_down_leaves_no_process(tmp_path: Path) -> None:
    directory = tmp_path / "cluster"
    try:
        started = chargeledger("cluster", "up", "--dir", str(directory), "--shards", "2", "--gateways", "1",
                               "--api", "2")
        assert started.returncode == 0, started.stdout + started.stderr
        layout = Layout.load(directory)
        assert layout is not None and layout.shard_names == ["s1", "s2"]
        assert (len(layout.gateways), len(layout.apis)) == (1, 2)  # the gateway serves both shards
        for port in [*layout.gateways, *layout.apis]:
            assert f"127.0.0.1:{port}" in started.stdout  # where each role listens is printed

        lines = healthy_status(directory)
        programs = programs_of(lines)
        assert set(programs) == {"postgres-primary", "postgres-replica", "nats-1", "nats-2", "nats-3", "api-1", "api-2",
                                 "gateway-1", "relay-s1", "relay-s2", "projections-s1",
                                 "projections-s2", "watchdog-s1", "watchdog-s2"}
        assert set(programs.values()) == {"RUNNING"}
        for shard in ("s1", "s2"):  # per shard: the relay's lag and both leaders, by their application_name
            line = next(line for line in lines if line.startswith(f"shard {shard}: "))
            assert "relay leader chargeledger relay " in line and "projections leader chargeledger projections " in line

        with psycopg.connect(layout.database_url()) as conn:
            assert conn.execute("SELECT state FROM pg_stat_replication").fetchall() == [("streaming",)]
        with psycopg.connect(layout.database_url(replica=True)) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        assert database_names(layout.database_url()) == {"chargeledger_s1", "chargeledger_s2"}
        assert database_names(layout.database_url(replica=True)) == {"chargeledger_s1", "chargeledger_s2"}

        # a platform admin (in the first shard: the directory and the operator users), then a tenant per shard
        admin_url = nats_nodes(directory).url_for(ADMIN)
        added = chargeledger("operators", "add", "root.admin", "--role", "platform_admin", stdin="a long passphrase\n",
                             DATABASE_URL=layout.database_url("s1"), NATS_URL=admin_url)
        assert added.returncode == 0, added.stdout + added.stderr
        api1, api2 = (f"http://127.0.0.1:{port}/operator/v1" for port in layout.apis)
        token: list[str] = []
        eventually(lambda: token.append(httpx.post(f"{api1}/auth/token", timeout=5, json={
            "username": "root.admin", "password": "a long passphrase"}).json()["access_token"]) or True, 60, "a token")
        platform = {"Authorization": f"Bearer {token[-1]}"}
        for api, name, shard in ((api1, "Alpha", "s1"), (api2, "Beta", "s2")):
            eventually(lambda api=api: httpx.get(f"{api}/tenants", headers=platform, timeout=5).status_code == 200,
                       60, f"{api} answering")
            r = httpx.post(f"{api}/tenants", headers=platform, json={"name": name, "shard": shard}, timeout=10)
            assert (r.status_code, r.json()["shard"]) == (201, shard), r.text
        for api in (api1, api2):  # merged from both shards' views (each shard's projections process)
            eventually(lambda api=api: [t["name"] for t in httpx.get(f"{api}/tenants", headers=platform, timeout=5)
                                        .json()["items"]] == ["Alpha", "Beta"], 60, "both tenants listed")

        # each shard's relay publishes into the one stream on the NATS cluster, under its shard's subjects
        eventually(lambda: stream_subjects(admin_url)[1] == {"s1", "s2"}, 60, "both shards' subjects on the stream")
        assert len(stream_subjects(admin_url)[0]) == 3  # R3 on the three nodes
        for shard in ("s1", "s2"):  # each tenant's events, replicated
            with psycopg.connect(layout.database_url(shard, replica=True), autocommit=True) as conn:
                eventually(lambda conn=conn: conn.execute("SELECT count(*) FROM registry_events").fetchone()[0] > 0,
                           30, f"shard {shard}'s events on the replica")
    finally:
        down_leaves_no_process(directory)
