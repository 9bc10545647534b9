"""The T/CEC door over tenant shards: an envelope routed by its OperatorID to the shard of the peer that signs it.

A peer is a tenant's link, so its rows (``tcec_peers``, the tokens we issued it, the envelopes seen, its
starts and outbox) live on that tenant's shard (docs/shards.md). :class:`ShardedDoor` keeps one
:class:`~adapters.interconnect.service.Door` per shard, each over that shard's Store and Ledger (made on
first use), and offers an envelope to the shards that link its OperatorID: the first whose pipeline
finds a peer signing it answers, and its handler runs against that shard's Ledger and Store. A shard
without such a peer passes the envelope on (:meth:`Door.answer_if_ours`): that is pipeline step 2 or 3,
before anything is written, so offering it to the next shard is safe. Two tenants on two shards may
link the same OperatorID; their SigSecrets differ (``Peers.configure`` refuses a shared one within a
shard; across shards they are fresh random secrets), so the signature tells the tenant, as on one
database.

Decision: **ask each shard and remember, no directory table.** Which shards link an OperatorID is
asked of every shard (``Peers.has_operator``, one indexed query each) and remembered for
:data:`REMEMBER_S`. A directory (OperatorID -> shard) would be a second copy of ``tcec_peers`` in
another database, to be written in step by every way a peer is configured (the operator API, the
console, ``chargeledger peers``, rows from before sharding) with a window between two transactions;
the pipeline reads ``tcec_peers`` anyway, and shards are few. When no remembered shard takes an
envelope, every shard is asked again at once before it is refused, so a link configured a moment ago
on another shard (by another process) is found on its first call; an unknown OperatorID costs one
query per shard per call, nothing remembered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from adapters.interconnect.service import Door
from adapters.interconnect.store.directory import Store
from adapters.interconnect.tcec.envelope import MESSAGES, EnvelopeError, RequestEnvelope, ResponseEnvelope, Ret
from adapters.interconnect.tcec.receive import answer

log = logging.getLogger("chargeledger.interconnect")
REMEMBER_S = 60.0  # seconds the shards linking an OperatorID are remembered


class ShardedDoor:
    """``answer`` as :class:`Door`'s, over several shards (``stores``: shard name -> Store, in the map's order)."""

    def __init__(self, stores: Mapping[str, Store], make_door: Callable[[str, Store], Door], *,
                 remember: float = REMEMBER_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.stores, self._make_door = dict(stores), make_door
        self.remember, self.clock = remember, clock
        self._doors: dict[str, Door] = {}
        self._where: dict[str, tuple[float, tuple[str, ...]]] = {}  # OperatorID -> (when asked, shards)
        self._lock = threading.Lock()

    def door(self, shard: str) -> Door:
        """The shard's Door (made on first use: its Ledger is made then)."""
        door = self._doors.get(shard)
        if door is None:
            with self._lock:
                door = self._doors.get(shard) or self._make_door(shard, self.stores[shard])
                self._doors[shard] = door
        return door

    def shards_linking(self, operator_id: str, *, fresh: bool = False) -> tuple[tuple[str, ...], bool]:
        """(the shards with an enabled peer of this OperatorID, whether they were just asked): remembered
        unless ``fresh``."""
        known = self._where.get(operator_id)
        if known is not None and not fresh and self.clock() - known[0] < self.remember:
            return known[1], False
        found = tuple(name for name, store in self.stores.items() if store.peers.has_operator(operator_id))
        if found:
            self._where[operator_id] = (self.clock(), found)
        else:
            self._where.pop(operator_id, None)
        return found, True

    def answer(self, interface: str, body: bytes, authorization: str | None) -> ResponseEnvelope:
        try:
            operator_id = RequestEnvelope.parse(body).operator_id
        except EnvelopeError:  # refused the same by any shard (4003), before any table is read
            return self.door(next(iter(self.stores))).answer(interface, body, authorization)
        try:
            offered: list[str] = []
            passed: list[tuple[str, ResponseEnvelope]] = []
            asked = False
            for fresh in (False, True):
                if fresh and asked:
                    break  # the shards were asked just now: nobody else links it
                shards, asked = self.shards_linking(operator_id, fresh=fresh)
                for shard in shards:
                    if shard in offered:
                        continue
                    offered.append(shard)
                    envelope, ours = self.door(shard).answer_if_ours(interface, body, authorization)
                    if ours:
                        return envelope
                    passed.append((shard, envelope))
        except psycopg.OperationalError as error:
            log.warning("T/CEC %s: a shard's database is unavailable (%s)", interface[:64], type(error).__name__)
            return answer(None, Ret.BUSY, MESSAGES[Ret.BUSY])
        return self._refused(interface, operator_id, passed)

    def _refused(self, interface: str, operator_id: str, passed: list[tuple[str, ResponseEnvelope]]) -> ResponseEnvelope:
        """No shard's peer signs it: 4004 for an OperatorID no shard links; 4001 if some link it, signed
        with that link's keys when exactly one shard has one (as one database signs for a lone candidate)."""
        bad_sig = [envelope for _, envelope in passed if envelope.ret == Ret.BAD_SIG]
        if not passed:
            refusal = answer(None, Ret.BAD_DATA, f"无此运营商: OperatorID {operator_id} is not a peer of ours")
        elif len(bad_sig) == 1:
            refusal = bad_sig[0]
        elif bad_sig:
            refusal = answer(None, Ret.BAD_SIG, bad_sig[0].msg)
        else:
            refusal = passed[0][1]
        log.info("T/CEC %s from %s refused on every shard: Ret %d %s", interface[:64], operator_id, refusal.ret,
                 refusal.msg)
        return refusal


def sharded_door(shards: Any, box: Any, make_door: Callable[[str, Store], Door]) -> ShardedDoor:
    """The door over the API's shards (``app.state.shards``: ``.all``, each with ``name`` and ``pool``)."""
    return ShardedDoor({shard.name: Store(shard.pool, box) for shard in shards.all}, make_door)
