"""``chargeledger cluster status``: what an operator of the local cluster looks at first.

Three parts, each read from where the truth is rather than from the programs' own word:

* every supervisord program and its state (supervisord's XML-RPC);
* per shard: the relay's lag (each Application's log head minus the relay's recorded position in that
  shard's database: whichever relay process leads, the position is the database's), and the leaders of
  the relay and of the projections (the session holding each one's advisory lock in ``pg_locks``, named
  by its ``application_name``, "chargeledger relay <pid>" / "chargeledger projections <pid>");
* the replica: ``pg_stat_replication`` on the primary, how far its replay is behind the primary's WAL
  (``pg_current_wal_lsn() - replay_lsn``, in bytes) and the replay lag in time. One physical replica
  streams the whole server, so this one figure covers every shard's database.

Exit 0 only when every program runs, every shard's relay and projections have a leader, and the
replica streams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from adapters.followers.relay.errors import DATABASE_ERRORS
from adapters.followers.relay.leader import RELAY_LOCK
from adapters.followers.relay.publisher import relay_lag, tracking_recorder
from adapters.postgres.env import eventsourcing_env
from adapters.postgres.leader_lock import PROJECTIONS_LOCK, holder_name
from adapters.servers.local_cluster import Layout

REPLICATION = ("SELECT application_name, state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS behind, "
               "replay_lag FROM pg_stat_replication")


def status(directory: Path, rpc: Any | None) -> int:
    """Print the cluster's state (``rpc``: supervisord's interface, None if it does not run); 0 if healthy."""
    if rpc is None:
        print(f"no cluster runs under {directory}")
        return 1
    infos = rpc.getAllProcessInfo()
    for info in infos:
        print(f"{info['name']:18} {info['statename']:9} pid {info['pid'] or '-':>7}  {info['description']}")
    layout = Layout.load(directory)
    healthy = all(i["statename"] == "RUNNING" for i in infos) and layout is not None
    for shard in layout.shard_names if layout else []:
        line, led = shard_line(layout.database_url(shard))  # type: ignore[union-attr]
        print(f"shard {shard}: {line}")
        healthy = healthy and led
    streaming = replication(layout) if layout else []
    for row in streaming:
        print(f"replica {row['application_name']}: {row['state']}, replay {row['behind'] or 0} bytes behind the "
              f"primary (lag {row['replay_lag'] or '0'}; one replica of every shard's database)")
    if not streaming:
        print("replica: not streaming")
    return 0 if healthy and any(r["state"] == "streaming" for r in streaming) else 1


def shard_line(database_url: str) -> tuple[str, bool]:
    """(what to print of one shard, whether its relay and projections both have a leader)."""
    try:
        behind = shard_relay_lag(database_url)
        with psycopg.connect(database_url, connect_timeout=2) as conn:
            relay, projections = (holder_name(conn, key) for key in (RELAY_LOCK, PROJECTIONS_LOCK))
    except DATABASE_ERRORS as error:  # psycopg's, or eventsourcing's around them
        return f"unknown (its database: {str(error).strip().splitlines()[0]})", False
    lag = sum(behind.values())
    detail = ", ".join(f"{name} {n}" for name, n in behind.items() if n)
    return (f"relay lag {lag} events{f' ({detail})' if detail else ''}, relay leader {relay or 'none'}, "
            f"projections leader {projections or 'none'}"), bool(relay and projections)


def shard_relay_lag(database_url: str) -> dict[str, int]:
    """Per Application, events the shard's relay has not published yet (adapters.followers.relay.publisher)."""
    from domain.ledger import Ledger

    env = eventsourcing_env(database_url, pool_size=1, max_overflow=1)
    ledger = Ledger(env)
    tracking = tracking_recorder(env)
    try:
        return relay_lag(ledger.applications, tracking)
    finally:
        tracking.datastore.close()
        ledger.close()


def replication(layout: Layout) -> list[dict[str, Any]]:
    """The primary's ``pg_stat_replication`` rows (empty if the primary does not answer)."""
    try:
        with psycopg.connect(layout.database_url(), connect_timeout=2, row_factory=dict_row) as conn:
            return conn.execute(REPLICATION).fetchall()
    except psycopg.OperationalError:
        return []
