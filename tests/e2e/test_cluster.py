"""``chargeledger cluster up|status|down`` (issue 15, item 1): a local deployment under supervisord in a
directory of its own: every program RUNNING, the replica streaming from the primary, the three NATS nodes
one JetStream cluster holding the relay's stream, both API workers answering; ``down`` leaves no process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats
import psutil
import psycopg

from adapters.servers.local_cluster import Layout
from adapters.servers.nats_users import ADMIN, STREAM, server_options

ROOT = Path(__file__).resolve().parents[2]


def chargeledger(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


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


def stream_cluster(layout: Layout, password: str) -> list[str]:
    """The names of the NATS nodes the relay's stream's cluster reports (leader first)."""
    async def info() -> list[str]:
        nc = await nats.connect(**server_options(layout.nats_url(ADMIN, {ADMIN: password})), connect_timeout=2)
        try:
            cluster = (await nc.jetstream().stream_info(STREAM)).cluster
            return [cluster.leader, *(r.name for r in cluster.replicas or [])] if cluster else []
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


def test_cluster_up_runs_every_program_the_replica_streams_and_down_leaves_no_process(tmp_path: Path) -> None:
    directory = tmp_path / "cluster"
    try:
        started = chargeledger("cluster", "up", "--dir", str(directory), "--gateways", "2", "--api", "2")
        assert started.returncode == 0, started.stdout + started.stderr
        layout = Layout.load(directory)
        assert layout is not None and len(layout.gateways) == 2 and len(layout.apis) == 2
        for port in [*layout.gateways, *layout.apis]:
            assert f"127.0.0.1:{port}" in started.stdout  # where each role listens is printed

        status = chargeledger("cluster", "status", "--dir", str(directory))
        assert status.returncode == 0, status.stdout + status.stderr
        programs = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()
                    if not line.startswith("replica")}
        assert set(programs) == {"postgres-primary", "postgres-replica", "nats-1", "nats-2", "nats-3", "gateway-1",
                                 "gateway-2", "api-1", "api-2", "relay", "projections", "watchdog"}
        assert set(programs.values()) == {"RUNNING"}

        with psycopg.connect(layout.database_url()) as conn:
            states = conn.execute("SELECT state FROM pg_stat_replication").fetchall()
        assert states == [("streaming",)]
        with psycopg.connect(layout.database_url(replica=True)) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)

        for port in layout.apis:  # an API worker answers, with the database behind it (a refused sign-in)
            eventually(lambda: httpx.post(f"http://127.0.0.1:{port}/operator/v1/auth/token", timeout=5,
                                          json={"username": "nobody", "password": "wrong"}).status_code == 401,
                       60, f"the API on {port} answering")
        password = json.loads((directory / "secrets.json").read_text())["nats"][ADMIN]
        eventually(lambda: len(stream_cluster(layout, password)) >= 1, 60, "the relay's stream on the NATS cluster")
        with psycopg.connect(layout.database_url(replica=True), autocommit=True) as conn:  # the relay's first write, replicated
            eventually(lambda: conn.execute("SELECT count(*) FROM ledger_identity").fetchone() == (1,), 30,
                       "the ledger's identity on the replica")
    finally:
        stopped = chargeledger("cluster", "down", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    left = processes_under(directory)
    for proc in left:  # nothing should be left; if it is, the test fails and the machine is cleaned
        proc.kill()
    assert not left, [" ".join(p.cmdline()) for p in left if p.is_running()]
    assert chargeledger("cluster", "status", "--dir", str(directory)).returncode == 1
