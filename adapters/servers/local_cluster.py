"""The files of a local multi-process deployment (``chargeledger cluster up``, adapters/cli/cluster.py):
its ports, its shards, its secrets, the NATS nodes' configurations and ``supervisord.conf``.

Everything lives under one directory (default ./var/cluster):

* ``cluster.json``: the ports and the number of shards picked at the first ``up`` (kept, so a second
  ``up`` finds the same ones);
* ``secrets.json`` (0600): the API's token key;
* ``nats/``: the three NATS nodes, an :class:`~adapters.servers.nats_cluster.EmbeddedNatsCluster` whose
  processes supervisord runs: its ``ports.json``, ``credentials.json`` (each NATS role's password, 0600)
  and ``node-<i>/nats.conf`` with the node's JetStream store (the one configuration writer of a cluster
  node, :meth:`~adapters.servers.nats_cluster.EmbeddedNatsCluster.write_configs`);
* ``postgres/primary``, ``postgres/replica``: the primary (``wal_level=replica``), holding every shard's
  database, and its streaming replica, made with ``pg_basebackup -R`` on a replication slot (a physical
  replica: every database of the primary, so every shard's);
* ``logs/``: supervisord's log and one per program; ``supervisord.conf``, its socket and pid file.

Processes run under supervisord (PyPI ``supervisor``): it starts, restarts after a crash and stops
every program; nothing here is a supervisor of our own.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from adapters.servers import nats_users
from adapters.servers.nats_cluster import EmbeddedNatsCluster
from adapters.servers.processes import HOST, free_ports

DATABASE = "chargeledger"
SLOT = "chargeledger_replica"  # the replica's replication slot on the primary
NATS_NODES = 3
MAIN = "main"  # the one shard without a shard map: adapters.postgres.shards.MAIN (servers may not import postgres)


class LayoutError(ValueError):
    """An ``up`` asking for what the deployment under the directory cannot become (said, nothing changed)."""


def shard_names(shards: int) -> list[str]:
    """One shard: ``main`` (no shard map: the deployment as it was before shards). Several: ``s1..sN``
    (never ``main``: the layout's rule, docs/shards.md, "The local cluster's layout")."""
    return [MAIN] if shards == 1 else [f"s{i}" for i in range(1, shards + 1)]


def gateway_plan(shards: list[str], count: int) -> list[tuple[str, str | None]]:
    """The gateways to run: (program name, the shard it serves, or None for every shard).

    Every gateway serves every shard (docs/shards.md, "The gateway": a login is routed by its pile
    number to its shard), so ``count`` gateways ``gateway-<i>`` whatever the shards; a program with a
    shard (``--shard``) is what a gateway limited to one shard would be."""
    return [(f"gateway-{i}", None) for i in range(1, count + 1)]


@dataclass
class Layout:
    """Where each program listens and how many shards there are; saved in ``cluster.json`` at the first ``up``."""

    postgres_primary: int
    postgres_replica: int
    gateways: list[int]  # in the order of gateway_plan
    apis: list[int]
    shards: int = 1
    gateways_per_shard: int = 0
    interconnect: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    standbys: bool = False  # a second process of each follower per shard (``up --standbys``)

    @classmethod
    def load_or_make(cls, directory: Path, gateways: int, apis: int, interconnect: bool,
                     shards: int | None = None, standbys: bool = False) -> Layout:
        """The saved layout (its servers' ports kept; gateways and API workers added or removed to the
        counts asked; shards added), or a new one on free ports. ``shards`` None: as saved (1 at first).
        Refused (:class:`LayoutError`): fewer shards than saved (a shard holds tenants, it is never
        removed), or several on a deployment made with one (its database is shard ``main``: a new
        ``--dir``, or its tenants moved, which this does not do)."""
        saved = cls.load(directory)
        layout = saved or cls(*free_ports(2), [], [])
        wanted = layout.shards if shards is None else shards
        if saved and wanted < layout.shards:
            raise LayoutError(f"the cluster under {directory} has {layout.shards} shards: a shard is never removed")
        if saved and layout.shards == 1 and wanted > 1:
            raise LayoutError(f"the cluster under {directory} was made without shards (its database is shard "
                              f"{MAIN}): a sharded cluster needs a --dir of its own")
        layout.shards = wanted
        count = len(gateway_plan(layout.shard_names, gateways))
        fresh = iter(free_ports(count + apis))  # distinct from one another (one at a time they may repeat)
        layout.gateways = (layout.gateways + [next(fresh) for _ in range(count)])[:count]
        layout.gateways_per_shard = gateways
        layout.apis = (layout.apis + [next(fresh) for _ in range(apis)])[:apis]
        layout.interconnect = interconnect
        layout.standbys = standbys
        (directory / "cluster.json").write_text(json.dumps(asdict(layout), indent=1))
        return layout

    @classmethod
    def load(cls, directory: Path) -> Layout | None:
        try:
            saved = json.loads((directory / "cluster.json").read_text())
            return cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved})
        except (OSError, ValueError, TypeError):
            return None

    @property
    def shard_names(self) -> list[str]:
        return shard_names(self.shards)

    def database_name(self, shard: str) -> str:
        return DATABASE if shard == MAIN else f"{DATABASE}_{shard}"

    def database_url(self, shard: str | None = None, replica: bool = False) -> str:
        """A shard's database (default the first: the directory shard) on the primary or the replica."""
        port = self.postgres_replica if replica else self.postgres_primary
        return f"postgresql://postgres@{HOST}:{port}/{self.database_name(shard or self.shard_names[0])}"

    def shard_map(self) -> str:
        """``CHARGELEDGER_SHARDS`` for every role ("" with one shard: no map, as before shards)."""
        if self.shards == 1:
            return ""
        return ",".join(f"{name}={self.database_url(name)}" for name in self.shard_names)

    def max_connections(self) -> int:
        """Postgres's ``max_connections`` for this layout: a role process holds 25-32 connections to each
        database it uses at rest (a pool per Application, its leader's lock, its LISTEN: measured on
        ``cluster up --shards 2``), an API worker and a gateway use every shard, a follower one."""
        followers = (4 if self.interconnect else 3) * (2 if self.standbys else 1)
        clients = (len(self.gateways) + len(self.apis)) * self.shards + followers * self.shards
        return 50 + 40 * clients

    def gateway_programs(self) -> list[tuple[str, str | None, int]]:
        """(program, shard or None, port) of each gateway."""
        return [(name, shard, port) for (name, shard), port
                in zip(gateway_plan(self.shard_names, self.gateways_per_shard), self.gateways)]


def nats_nodes(directory: Path) -> EmbeddedNatsCluster:
    """The deployment's NATS nodes (ports and passwords made at the first ``up``, kept under ``nats/``)."""
    return EmbeddedNatsCluster(directory / "nats", NATS_NODES)


def load_secrets(directory: Path) -> dict[str, object]:
    """``{"token_key": ...}``, made at the first call and kept (0600)."""
    path = directory / "secrets.json"
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = {}
    if not kept.get("token_key"):
        kept["token_key"] = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(kept, out, indent=1)
    return kept


def postgres_command(binaries: Path, data_dir: Path, port: int, max_connections: int) -> str:
    """The postmaster in the foreground (supervisord is its parent), a primary able to feed replicas.
    The replica is given the primary's ``max_connections`` (a hot standby refuses to run with fewer)."""
    return shlex.join([str(binaries / "postgres"), "-D", str(data_dir), "-c", f"listen_addresses={HOST}",
                       "-p", str(port), "-c", "unix_socket_directories=", "-c", f"max_connections={max_connections}",
                       "-c", "shared_buffers=128MB", "-c", "wal_level=replica", "-c", "max_wal_senders=10",
                       "-c", "max_replication_slots=10", "-c", "hot_standby=on"])


@dataclass
class Program:
    name: str
    command: str
    priority: int  # lower starts first and stops last
    environment: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    stopsignal: str = "TERM"


def role_programs(layout: Layout, nats: EmbeddedNatsCluster, env: dict[str, str]) -> list[Program]:
    """The platform's roles, each ``chargeledger serve --role ...`` with a NATS_URL listing the three nodes
    with its role's user, ``CHARGELEDGER_SHARDS`` (several shards) and DATABASE_URL the first shard's.
    The API workers route each request by tenant over every shard; a follower runs per shard
    (``relay-<shard>``, ..., with ``--shard``; unsuffixed with one shard), with ``standbys`` a second one
    of each (``relay-<shard>-2``, ...: one leads or both take turns, docs/operations.md); gateways as
    :func:`gateway_plan`."""
    serve = shlex.join([sys.executable, "-m", "app", "serve", "--role"])
    sharded = layout.shards > 1
    shared = {**env, "DATABASE_URL": layout.database_url(),
              **({"CHARGELEDGER_SHARDS": layout.shard_map()} if sharded else {})}

    def program(name: str, role: str, nats_role: str, *options: str, shard: str | None = None) -> Program:
        on_shard = ["--shard", shard] if shard and sharded else []
        return Program(name, f"{serve} {shlex.join([role, *options, *on_shard])}", 100,
                       {**shared, "NATS_URL": nats.url_for(nats_role)})

    programs = [program(name, "gateway", nats_users.GATEWAY, "--host", HOST, "--port", str(port), "--no-relay",
                        "--no-watchdog", shard=shard) for name, shard, port in layout.gateway_programs()]
    programs += [program(f"api-{i}", "api", nats_users.READER, "--host", HOST, "--port", str(port))
                 for i, port in enumerate(layout.apis, 1)]
    followers = [("relay", nats_users.RELAY), ("projections", nats_users.READER), ("watchdog", nats_users.READER)]
    if layout.interconnect:
        followers.append(("interconnect", nats_users.READER))
    for shard in layout.shard_names:
        for copy in ("", "-2") if layout.standbys else ("",):
            programs += [program((f"{role}-{shard}" if sharded else role) + copy, role, nats_role, shard=shard)
                         for role, nats_role in followers]
    return programs


def supervisord_conf(directory: Path, programs: list[Program]) -> str:
    """supervisord's configuration: its socket, pid file and logs under ``directory``; every program
    started by ``cluster up`` (autostart off: the order matters), restarted if it dies, and stopped with
    its process group."""
    logs = directory / "logs"
    lines = ["[unix_http_server]", f"file={directory / 'supervisor.sock'}", "chmod=0700", "",
             "[supervisord]", f"logfile={logs / 'supervisord.log'}", f"pidfile={directory / 'supervisord.pid'}",
             f"directory={directory}", "user=root" if os.geteuid() == 0 else "", "",
             "[rpcinterface:supervisor]",
             "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
             "[supervisorctl]", f"serverurl=unix://{directory / 'supervisor.sock'}", ""]
    root = Path(__file__).resolve().parents[2]
    for p in programs:
        env = {"PYTHONPATH": str(root), **p.environment}
        quoted = [k for k, v in env.items() if '"' in v or "\n" in v]
        if quoted:
            raise ValueError(f"{p.name}: {', '.join(quoted)} may not hold a double quote or a line break")
        lines += [f"[program:{p.name}]", f"command={_escape(p.command)}", f"directory={root}",
                  f"priority={p.priority}", "autostart=false", "autorestart=true", "startsecs=1",
                  "startretries=5", f"stopsignal={p.stopsignal}", "stopwaitsecs=20", "stopasgroup=true",
                  "killasgroup=true", "redirect_stderr=true", f"stdout_logfile={logs / (p.name + '.log')}",
                  "stdout_logfile_maxbytes=20MB", "stdout_logfile_backups=2",
                  "environment=" + ",".join(f'{k}="{_escape(v)}"' for k, v in env.items())]
        if p.user:
            lines.append(f"user={p.user}")
        lines.append("")
    return "\n".join(lines)


def _escape(text: str) -> str:
    """supervisord expands ``%(name)s`` in values: a literal % is written %%."""
    return text.replace("%", "%%")
