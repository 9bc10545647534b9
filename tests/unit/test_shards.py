"""The shard map from configuration, and the shard-qualified NATS subjects and message ids (docs/shards.md)."""

from __future__ import annotations

import pytest

from adapters.followers.relay.stream import MAIN_SHARD, message_id, notification_of, qualified_ledger, subject_for
from adapters.postgres.shards import MAIN, ShardConfigError, ShardMap, UnknownShard

TOPIC = "domain.session:ChargingSession.Settled"


def test_the_map_is_read_in_order_and_a_url_may_hold_commas() -> None:
    shards = ShardMap.parse("s1=postgresql://a/one, s2=postgresql://h1,h2/two?target_session_attrs=read-write")
    assert shards.names == ["s1", "s2"]
    assert shards.urls["s2"] == "postgresql://h1,h2/two?target_session_attrs=read-write"
    assert shards.directory_url == "postgresql://a/one" and not shards.single
    with pytest.raises(UnknownShard, match="the shards are s1, s2"):
        shards.url("s3")


@pytest.mark.parametrize("text", ["S1=postgresql://a/b", "s1", "s1=", "1s=postgresql://a/b",
                                  "s1=postgresql://a/b,s1=postgresql://c/d", "Sessions=postgresql://a/b"])
def test_a_bad_map_is_refused_at_start(text: str) -> None:
    with pytest.raises(ShardConfigError):
        ShardMap.parse(text)


def test_without_shards_there_is_one_named_main_at_database_url() -> None:
    shards = ShardMap.from_env({"DATABASE_URL": "postgresql://a/b"})
    assert (shards.names, shards.single, shards.url(MAIN)) == ([MAIN], True, "postgresql://a/b")
    assert ShardMap.from_env({"CHARGELEDGER_SHARDS": "x=postgresql://c/d", "DATABASE_URL": "postgresql://a/b"}).names == ["x"]
    with pytest.raises(ShardConfigError):
        ShardMap.from_env({})


def test_main_keeps_its_subjects_and_ids_and_other_shards_are_qualified() -> None:
    assert MAIN_SHARD == MAIN
    assert subject_for("Sessions", TOPIC) == subject_for("Sessions", TOPIC, MAIN) == "chargeledger.Sessions.ChargingSession.Settled"
    assert subject_for("Sessions", TOPIC, "s2") == "chargeledger.s2.Sessions.ChargingSession.Settled"
    assert qualified_ledger("abc123", MAIN) == "abc123"
    ledger = qualified_ledger("abc123", "s2")
    msg_id = message_id(ledger, "Sessions", 7)
    assert msg_id == "s2.abc123:Sessions:7" != message_id(qualified_ledger("abc123", "s1"), "Sessions", 7)
    assert notification_of(msg_id, ledger, "Sessions") == 7
    assert notification_of(msg_id, "abc123", "Sessions") is None  # another shard's (or main's) is not ours
