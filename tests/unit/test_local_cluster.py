"""The files ``cluster up`` writes, without starting anything (adapters/servers/local_cluster.py): the
programs of one shard (as before shards) and of two (a follower per shard, gateways serving both), the
layout's shard count that only grows, and the NATS nodes' configurations from the one writer they share
with ``EmbeddedNatsCluster.start`` (tests/e2e/test_nats_cluster.py runs that one)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from adapters.postgres import shards
from adapters.postgres.shards import ShardMap
from adapters.servers import nats_users
from adapters.servers.local_cluster import MAIN, Layout, LayoutError, gateway_plan, nats_nodes, role_programs


def programs(directory: Path, shards: int | None, gateways: int = 2, apis: int = 2) -> dict[str, list[str]]:
    layout = Layout.load_or_make(directory, gateways, apis, False, shards)
    found = {p.name: p for p in role_programs(layout, nats_nodes(directory), {})}
    return {name: [*shlex.split(p.command)[5:], *(f"{k}={v}" for k, v in sorted(p.environment.items())
                                                  if k in ("CHARGELEDGER_SHARDS", "DATABASE_URL"))]
            for name, p in found.items()}


def test_one_shard_is_the_cluster_as_before_shards(tmp_path: Path) -> None:
    found = programs(tmp_path, None)
    layout = Layout.load(tmp_path)
    assert layout is not None and layout.shard_names == [MAIN] and MAIN == shards.MAIN
    assert set(found) == {"gateway-1", "gateway-2", "api-1", "api-2", "relay", "projections", "watchdog"}
    url = layout.database_url()
    assert url.endswith("/chargeledger")
    assert found["relay"] == ["relay", f"DATABASE_URL={url}"]  # no --shard, no shard map
    assert found["gateway-1"][:5] == ["gateway", "--host", "127.0.0.1", "--port", str(layout.gateways[0])]


def test_two_shards_a_database_each_and_their_followers_and_gateways(tmp_path: Path) -> None:
    found = programs(tmp_path, 2, gateways=2)
    layout = Layout.load(tmp_path)
    assert layout is not None and layout.shard_names == ["s1", "s2"]
    shard_map = ShardMap.from_env({"CHARGELEDGER_SHARDS": layout.shard_map()})
    assert shard_map.names == ["s1", "s2"]
    assert [shard_map.urls[n].rsplit("/", 1)[1] for n in shard_map.names] == ["chargeledger_s1", "chargeledger_s2"]
    setting = [f"CHARGELEDGER_SHARDS={layout.shard_map()}", f"DATABASE_URL={layout.database_url('s1')}"]
    assert set(found) == {"gateway-1", "gateway-2", "api-1", "api-2",
                          *(f"{role}-{s}" for role in ("relay", "projections", "watchdog") for s in ("s1", "s2"))}
    assert found["relay-s2"] == ["relay", "--shard", "s2", *setting]
    assert found["projections-s1"] == ["projections", "--shard", "s1", *setting]
    assert found["api-1"][-2:] == setting and "--shard" not in found["api-1"]  # routed by tenant, every shard
    assert found["gateway-2"][-2:] == setting and "--shard" not in found["gateway-2"]  # routed by pile, every shard
    assert layout.max_connections() >= 50 + 40 * 14  # 2 gateways and 2 API workers on 2 shards, 3 followers x 2


def test_standbys_a_second_of_each_follower_per_shard_counted_in_the_connections(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    single = Layout.load_or_make(tmp_path / "one", 2, 2, False, 2)
    layout = Layout.load_or_make(tmp_path / "two", 2, 2, False, 2, standbys=True)
    found = {p.name: p.command for p in role_programs(layout, nats_nodes(tmp_path / "two"), {})}
    for role in ("relay", "projections", "watchdog"):
        for shard in ("s1", "s2"):
            assert found[f"{role}-{shard}-2"] == found[f"{role}-{shard}"]  # the same command, twice
    assert layout.max_connections() == single.max_connections() + 40 * 3 * 2
    assert Layout.load(tmp_path / "two").standbys  # type: ignore[union-attr]
    assert not Layout.load_or_make(tmp_path / "two", 2, 2, False).standbys  # each up says again


def test_every_gateway_serves_every_shard() -> None:
    assert gateway_plan(["main"], 2) == [("gateway-1", None), ("gateway-2", None)]
    assert gateway_plan(["s1", "s2"], 1) == [("gateway-1", None)]


def test_shards_only_grow_and_the_ports_are_kept(tmp_path: Path) -> None:
    first = Layout.load_or_make(tmp_path, 1, 1, False, 2)
    again = Layout.load_or_make(tmp_path, 1, 1, False)  # no --shards: as saved
    assert (again.shards, again.postgres_primary, again.gateways) == (2, first.postgres_primary, first.gateways)
    grown = Layout.load_or_make(tmp_path, 1, 1, False, 3)
    assert grown.shard_names == ["s1", "s2", "s3"] and grown.gateways[:2] == first.gateways
    with pytest.raises(LayoutError, match="never removed"):
        Layout.load_or_make(tmp_path, 1, 1, False, 2)
    assert Layout.load(tmp_path).shards == 3  # type: ignore[union-attr]  # refused: nothing changed
    unsharded = tmp_path / "one"
    unsharded.mkdir()
    Layout.load_or_make(unsharded, 1, 1, False)
    with pytest.raises(LayoutError, match="without shards"):
        Layout.load_or_make(unsharded, 1, 1, False, 2)


def test_the_nats_nodes_configurations_form_one_cluster_with_the_same_users(tmp_path: Path) -> None:
    nodes = nats_nodes(tmp_path)
    commands = nodes.write_configs()
    configs = [json.loads(Path(command[-1]).read_text()) for command in commands]
    assert [c["server_name"] for c in configs] == ["n0", "n1", "n2"]
    assert [command[0].endswith("nats-server") and command[1] == "-c" for command in commands] == [True] * 3
    routes = {f"{c['cluster']['listen'].rsplit(':', 1)[1]}" for c in configs}
    for config in configs:
        assert config["cluster"]["name"] == "chargeledger" and config["jetstream"]["store_dir"]
        assert {r.rsplit(":", 1)[1] for r in config["cluster"]["routes"]} == routes  # every node's route
        assert config["cluster"]["authorization"]["user"] == "route"
        assert config["authorization"] == configs[0]["authorization"]  # one set of role users everywhere
    users = {u["user"] for u in configs[0]["authorization"]["users"]}
    assert set(nats_users.ROLES) <= users
    url = nodes.url_for(nats_users.RELAY)  # what the relays are given: every node, the relay's user
    assert [u.rsplit(":", 1)[1] for u in url.split(",")] == [c["listen"].rsplit(":", 1)[1] for c in configs]
    assert nats_nodes(tmp_path).url_for(nats_users.RELAY) == url  # ports and passwords kept for the next up
