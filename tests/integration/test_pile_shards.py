"""The gateway's pile -> shard lookup (pile_link/shards.py ``PileShards``) on the real directory of two
shards: logins arriving together are looked up in one query, a pile found is never asked again, an
unknown pile answers None (refused at login) and is found once registered."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

import adapters.postgres.shards as directory_module
from adapters.postgres.shards import ShardDirectory
from pile_link.shards import PileShards
from tests.factories import build_world
from tests.integration.shards_harness import TwoShards, two_shards  # noqa: F401 - the fixture

PILES = {"s1": [f"3201060002{i:04d}" for i in range(0, 40)], "s2": [f"3201060002{i:04d}" for i in range(40, 80)]}


class Counted(ShardDirectory):
    """The real directory, counting the lookups that reach its tables."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.queries: list[list[str]] = []

    def shards_of_piles(self, pile_nos):  # type: ignore[no-untyped-def, override]
        self.queries.append(list(pile_nos))
        return super().shards_of_piles(pile_nos)


def test_logins_together_are_one_lookup_and_known_piles_are_not_asked_again(
        two_shards: TwoShards, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    directory = Counted(two_shards.map)
    for name, ledger in two_shards.ledgers.items():
        world = build_world(ledger, pile_no=PILES[name][0])
        directory.place(world.tenant_id, name, "test")
        for pile_no in PILES[name]:
            directory.claim_pile(pile_no, world.tenant_id)
    unknown = "32010600029999"
    stats: Counter[str] = Counter()
    shards = PileShards(Counted(two_shards.map), stats)  # a gateway's own directory: nothing cached yet
    everyone = [*PILES["s1"], *PILES["s2"], unknown]

    async def main() -> None:
        found = await asyncio.gather(*(shards.shard_of(p) for p in everyone))
        assert found == ["s1"] * 40 + ["s2"] * 40 + [None]
        assert len(shards.directory.queries) <= 2  # the first login's lookup, then everyone who came meanwhile
        assert sorted(p for q in shards.directory.queries for p in q) == sorted(everyone)
        asked = len(shards.directory.queries)
        assert await asyncio.gather(*(shards.shard_of(p) for p in PILES["s2"])) == ["s2"] * 40
        assert len(shards.directory.queries) == asked  # known for the process's life: no query
        # registered a moment later: found (the directory forgets an unknown number after a few seconds)
        directory.claim_pile(unknown, directory.tenants().popitem()[0])
        assert await shards.shard_of(unknown) is None  # still remembered as unknown (UNKNOWN_TTL)
        monkeypatch.setattr(directory_module, "UNKNOWN_TTL", 0.0)  # ... until those few seconds have passed
        assert await shards.shard_of(unknown) in ("s1", "s2")

    try:
        asyncio.run(main())
    finally:
        shards.close()
    assert stats["shard_lookups"] == len(shards.directory.queries)
