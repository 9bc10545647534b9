"""``chargeledger peers``: an operator configures a peer, gets the secrets we issued it once, stores the
secrets it issued us from stdin, lists its peers; nothing secret is printed by ``list`` or stored in the clear."""

from __future__ import annotations

import io
import json
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from adapters.interconnect.store.peers import KEYS_SETTING, Peers
from adapters.interconnect.store.tokens import IssuedTokens
from adapters.interconnect.tcec.peer import Credentials
from adapters.payments.config import SecretBox
from app import main

KEYS = SecretBox.generate_setting("cli1")


@pytest.fixture
def cli(database_url: str, nats_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("NATS_URL", nats_url)
    monkeypatch.setenv("CHARGELEDGER_VAR", str(tmp_path))
    monkeypatch.setenv(KEYS_SETTING, KEYS)
    return database_url


def run(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(argv)


def test_an_operator_links_a_peer_from_the_command_line(cli: str, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    tenant = str(uuid.uuid4())
    add = ["peers", "add", "MA1G55M8X", "--tenant", tenant, "--our-operator-id", "MA2OURS01", "--base-url",
           "https://evcs.example.com/evcs/v1", "--role", "customer", "--dialect", "xiaoju", "--name", "小桔"]
    assert run(monkeypatch, add) == 0
    printed = capsys.readouterr().out
    issued = json.loads(printed[printed.index("{"):])
    assert issued["OperatorID"] == "MA1G55M8X" and len(issued["SigSecret"]) == 16
    assert run(monkeypatch, add[:-2] + ["--name", "Xiaoju"]) == 0  # changed: same secrets, not printed again
    assert "SigSecret" not in capsys.readouterr().out
    with ConnectionPool(cli, min_size=1, max_size=1, open=True) as pool:
        peers = Peers(pool, SecretBox.from_setting(KEYS))
        peer = peers.get(uuid.UUID(tenant), "MA1G55M8X")
        old_token, _ = IssuedTokens(pool, peers.box).issue(peer.peer_id, 7200, datetime.now(timezone.utc))
    assert run(monkeypatch, add[:-2] + ["--name", "Xiaoju", "--new-secrets"]) == 0  # a rotation
    printed = capsys.readouterr().out
    rotated = json.loads(printed[printed.index("{"):])
    assert rotated["SigSecret"] != issued["SigSecret"]
    issued = rotated
    with ConnectionPool(cli, min_size=1, max_size=1, open=True) as pool:
        assert IssuedTokens(pool, peers.box).owner(old_token, datetime.now(timezone.utc)) is None
    theirs = Credentials.generate()
    assert run(monkeypatch, ["peers", "outbound", "MA1G55M8X", "--tenant", tenant], json.dumps(theirs.as_dict())) == 0
    assert run(monkeypatch, ["peers", "list", "--tenant", tenant]) == 0
    listing = capsys.readouterr().out
    assert "MA1G55M8X" in listing and "outbound=set" in listing and "xiaoju" in listing
    assert all(secret not in listing for secret in [issued["SigSecret"], *theirs.as_dict().values()])
    with ConnectionPool(cli, min_size=1, max_size=1, open=True) as pool:
        peer = Peers(pool, SecretBox.from_setting(KEYS)).get(uuid.UUID(tenant), "MA1G55M8X")
    assert peer.inbound.as_dict() == {k: v for k, v in issued.items() if k != "OperatorID"}
    assert peer.outbound == theirs and peer.name == "Xiaoju"
    with psycopg.connect(cli) as conn:
        stored = conn.execute("SELECT row_to_json(t)::text FROM tcec_peers t").fetchone()[0]
    assert all(secret not in stored for secret in [*theirs.as_dict().values(), issued["SigSecret"]])


def test_bad_peer_settings_are_refused_with_a_reason(cli: str, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run(monkeypatch, ["peers", "add", "SHORT", "--tenant", str(uuid.uuid4()), "--our-operator-id",
                             "MA2OURS01", "--base-url", "https://x/evcs/v1", "--role", "regulator"]) == 2
    assert "9 letters or digits" in capsys.readouterr().err
    outbound = ["peers", "outbound", "MA1G55M8X", "--tenant", str(uuid.uuid4())]
    assert run(monkeypatch, outbound, json.dumps(Credentials.generate().as_dict())) == 2
    assert "no peer MA1G55M8X" in capsys.readouterr().err
    assert run(monkeypatch, outbound, '{"SigSecret": "x"}') == 2
    assert "OperatorSecret, DataSecret, DataSecretIV, SigSecret" in capsys.readouterr().err
    assert run(monkeypatch, outbound, json.dumps({**Credentials.generate().as_dict(), "DataSecret": "short"})) == 2
    assert "16 bytes" in capsys.readouterr().err
    monkeypatch.delenv(KEYS_SETTING)
    assert run(monkeypatch, ["peers", "list", "--tenant", str(uuid.uuid4())]) == 2
    assert KEYS_SETTING in capsys.readouterr().err
