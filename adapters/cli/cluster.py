"""``chargeledger cluster up|down|status``: a local multi-process deployment under supervisord.

``up`` writes the deployment's files (adapters/servers/local_cluster.py), starts supervisord (daemonized)
unless it already runs, and starts, in order: the Postgres primary and the three NATS nodes (waiting
until each node's JetStream is current); every shard's database on the primary (``--shards N``, created
the first time); the streaming replica (made from the primary with ``pg_basebackup -R`` on a replication
slot the first time); then the roles, each ``chargeledger serve --role ...``: ``--api`` API workers on
ports of their own (routing by tenant over every shard), per shard one relay, one projections, one
watchdog and the T/CEC outbox (``interconnect``) when ``CHARGELEDGER_INTERCONNECT_KEYS`` is set, and the
gateways (``--gateways``, each serving every shard: local_cluster.gateway_plan). It
prints where each listens. ``down`` stops every program and supervisord. ``status``: the programs, per
shard the relay's lag and the leaders, and the replica's (adapters/cli/cluster_status.py).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from adapters.cli import cluster_status
from adapters.servers import local_cluster
from adapters.servers.local_cluster import SLOT, Layout, LayoutError, Program
from adapters.servers.nats_cluster import EmbeddedNatsCluster
from adapters.servers.nats_users import READER
from adapters.servers.postgres_server import POSTGRES_BIN_PATH, EmbeddedPostgres
from adapters.servers.processes import HOST, accepts_tcp
from adapters.servers.resolve import redacted

PASSED_ON = ("CHARGELEDGER_PAYMENT_KEYS", "CHARGELEDGER_PUBLIC_URL", "CHARGELEDGER_INTERCONNECT_KEYS",
             "CHARGELEDGER_TOKEN_TTL", "LOG_LEVEL")
START_TIMEOUT = 90.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=Path("var/cluster"), help="where everything lives "
                        "(default ./var/cluster)")
    parser.add_argument("--gateways", type=int, default=2, help="up: gateway processes (default 2)")
    parser.add_argument("--api", type=int, default=2, help="up: API worker processes (default 2)")
    parser.add_argument("--shards", type=int, default=None, help="up: tenant shards, a database each on the "
                        "primary (default: as the first up made them, else 1: no shard map); only ever grows")
    parser.add_argument("--standbys", action="store_true", help="up: a second relay, projections and watchdog "
                        "(and interconnect) per shard, standing by or taking turns (each up says again)")


def run(args: argparse.Namespace) -> int:
    directory = args.dir.resolve()
    if args.action == "up":
        if args.gateways < 1 or args.api < 1 or (args.shards is not None and args.shards < 1):
            print("--gateways, --api and --shards are at least 1", file=sys.stderr)
            return 2
        try:
            return up(directory, args.gateways, args.api, args.shards, args.standbys)
        except LayoutError as error:
            print(error, file=sys.stderr)
            return 2
    if args.action == "down":
        return down(directory)
    return cluster_status.status(directory, supervisor(directory) if supervisord_pid(directory) else None)


# ---- supervisord ------------------------------------------------------------------------------------------
def supervisor(directory: Path) -> Any:
    """supervisord's XML-RPC interface, over its unix socket."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{directory / 'supervisor.sock'}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def supervisord_pid(directory: Path) -> int | None:
    """The pid of this directory's supervisord, if it runs."""
    try:
        pid = int((directory / "supervisord.pid").read_text().split()[0])
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE and str(directory / "supervisord.conf") in proc.cmdline():
            return pid
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    return None


def start_supervisord(directory: Path) -> None:
    binary = Path(sys.executable).parent / "supervisord"
    subprocess.run([str(binary), "-c", str(directory / "supervisord.conf")], check=True, stdin=subprocess.DEVNULL)
    wait(lambda: _answers(directory), 30, "supervisord answering on its socket")


def _answers(directory: Path) -> bool:
    try:
        return supervisor(directory).getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Fault):
        return False


def start(directory: Path, *names: str) -> None:
    """Start the programs (those running are left alone) and wait until each is RUNNING."""
    rpc = supervisor(directory)
    for name in names:
        if rpc.getProcessInfo(name)["statename"] not in ("RUNNING", "STARTING"):
            rpc.startProcess(name, False)
    wait(lambda: all(rpc.getProcessInfo(n)["statename"] == "RUNNING" for n in names), START_TIMEOUT,
         f"{', '.join(names)} running (see {directory / 'logs'})")


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout:g} s: {what}")
        time.sleep(0.2)


# ---- up -----------------------------------------------------------------------------------------------
def up(directory: Path, gateways: int, apis: int, shards: int | None = None, standbys: bool = False) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # Postgres may run as its own system user: it must reach its PGDATA below
    (directory / "logs").mkdir(exist_ok=True)
    kept = local_cluster.load_secrets(directory)
    layout = Layout.load_or_make(directory, gateways, apis, bool(os.environ.get("CHARGELEDGER_INTERCONNECT_KEYS")),
                                 shards, standbys)
    primary = EmbeddedPostgres(directory / "postgres" / "primary", layout.postgres_primary)
    replica = EmbeddedPostgres(directory / "postgres" / "replica", layout.postgres_replica)
    primary.initialize()
    nats = local_cluster.nats_nodes(directory)
    env = {"CHARGELEDGER_VAR": str(directory / "var"), "CHARGELEDGER_TOKEN_KEY": str(kept["token_key"]),
           "LOG_LEVEL": "WARNING", **{k: os.environ[k] for k in PASSED_ON if os.environ.get(k)}}
    servers = [Program("postgres-primary", local_cluster.postgres_command(POSTGRES_BIN_PATH, primary.data_dir,
                                                                          layout.postgres_primary,
                                                                          layout.max_connections()),
                       10, user=primary.system_user, stopsignal="INT"),
               Program("postgres-replica", local_cluster.postgres_command(POSTGRES_BIN_PATH, replica.data_dir,
                                                                          layout.postgres_replica,
                                                                          layout.max_connections()),
                       20, user=replica.system_user, stopsignal="INT")]
    servers += [Program(f"nats-{i}", shlex.join(command), 10) for i, command in enumerate(nats.write_configs(), 1)]
    roles = local_cluster.role_programs(layout, nats, env)
    (directory / "supervisord.conf").write_text(local_cluster.supervisord_conf(directory, servers + roles))
    if supervisord_pid(directory) is None:
        start_supervisord(directory)
    else:
        _apply_changes(directory)  # a second `up`: programs added, changed or removed
    start(directory, "postgres-primary", *(f"nats-{i}" for i in range(1, len(nats.nodes) + 1)))
    wait(lambda: _postgres_ready(layout.postgres_primary), START_TIMEOUT, "the Postgres primary accepting connections")
    _create_databases(layout)
    if not (replica.data_dir / "PG_VERSION").exists():
        _make_replica(layout, replica)
    start(directory, "postgres-replica")
    nats.wait_healthy(nats.nodes)  # every node's JetStream current: the relays make the stream at once
    start(directory, *(p.name for p in roles))
    print_where(directory, layout, nats)
    return 0


def _apply_changes(directory: Path) -> None:
    """After ``reloadConfig``: add the new programs, drop the removed ones (stopped first)."""
    rpc = supervisor(directory)
    added, changed, removed = rpc.reloadConfig()[0]
    for name in removed + changed:
        try:
            rpc.stopProcessGroup(name)
        except xmlrpc.client.Fault:
            pass
        rpc.removeProcessGroup(name)
    for name in added + changed:
        rpc.addProcessGroup(name)


def _postgres_ready(port: int, database: str = "postgres") -> bool:
    if not accepts_tcp(port):
        return False
    try:
        with psycopg.connect(f"postgresql://postgres@{HOST}:{port}/{database}", connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _create_databases(layout: Layout) -> None:
    """Every shard's database on the primary, those missing created (the replica streams them all)."""
    with psycopg.connect(f"postgresql://postgres@{HOST}:{layout.postgres_primary}/postgres", autocommit=True) as conn:
        for shard in layout.shard_names:
            name = layout.database_name(shard)
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _make_replica(layout: Layout, replica: EmbeddedPostgres) -> None:
    """The replica's PGDATA from the primary: ``pg_basebackup -R`` (standby.signal and primary_conninfo
    written), creating the replication slot the replica streams from (so the primary keeps its WAL)."""
    with psycopg.connect(f"postgresql://postgres@{HOST}:{layout.postgres_primary}/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (SLOT,)).fetchone():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT,))  # a replica made before, since removed
    replica.initialize(initdb=False)
    replica.run_binary("pg_basebackup", "-D", str(replica.data_dir), "-R", "-X", "stream", "-c", "fast", "-C", "-S", SLOT,
                       "-h", HOST, "-p", str(layout.postgres_primary), "-U", "postgres")


def print_where(directory: Path, layout: Layout, nats: EmbeddedNatsCluster) -> None:
    print(f"cluster up under {directory} (supervisord: {directory / 'supervisord.conf'}, logs in {directory / 'logs'})")
    for shard in layout.shard_names:
        print(f"  shard {shard:6}      {layout.database_url(shard)}")
    print(f"  postgres-replica  {layout.database_url(replica=True)}  (hot standby of every shard's database, "
          f"read only; slot {SLOT})")
    for i, node in enumerate(nats.nodes, 1):
        print(f"  nats-{i}            nats://{HOST}:{node.port}  (JetStream; cluster route {HOST}:{node.route_port}, "
              f"monitoring http://{HOST}:{node.http_port})")
    for name, shard, port in layout.gateway_programs():
        print(f"  {name:17} YKC piles on {HOST}:{port}" + (f" (shard {shard}'s)" if shard else ""))
    for i, port in enumerate(layout.apis, 1):
        print(f"  api-{i}             http://{HOST}:{port}")
    followers = "relay, projections, watchdog" + (", interconnect" if layout.interconnect else "")
    each = "two of each (the second: <name>-2)" if layout.standbys else "one of each"
    print(f"  {followers}: no port (they follow the primary's logs)"
          + (f", {each} per shard ({', '.join(layout.shard_names)})" if layout.shards > 1
             else ", two of each (the second: <name>-2)" if layout.standbys else ""))
    if layout.shards > 1:
        print(f"  CHARGELEDGER_SHARDS={layout.shard_map()}  (the first shard holds the directory and the "
              f"operator users: chargeledger operators with DATABASE_URL={layout.database_url()})")
    print(f"  roles' NATS_URL (reader): {redacted(nats.url_for(READER))}")
    print(f"  API tokens signed with the key in {directory / 'secrets.json'}; NATS passwords in {nats.credentials}")


# ---- down ----------------------------------------------------------------------------------------
def down(directory: Path) -> int:
    """Stop every program (roles first, servers last: their priorities), then supervisord itself."""
    pid = supervisord_pid(directory)
    if pid is None:
        print(f"no cluster runs under {directory}")
        return 0
    rpc = supervisor(directory)
    rpc.stopAllProcesses(True)
    rpc.shutdown()
    try:
        psutil.Process(pid).wait(60)
    except psutil.NoSuchProcess:
        pass
    print(f"cluster under {directory} stopped")
    return 0
