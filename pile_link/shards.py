"""One gateway process for the piles of every tenant shard (docs/shards.md, "The gateway").

A shard is a ledger database of its own; a pile lives on its tenant's shard. :class:`ShardedGateway`
listens on one port for every pile and keeps, per shard, an **engine**: a
:class:`~pile_link.gateway.Gateway` on that shard's Ledger and database, started without a listening
socket (``start(listen=False)``). The engine holds everything of one shard the single-shard gateway
holds: the login facts and what piles are owed (read in batches), the write-behind queues, the
open-sessions index and the watchdog's sweep, the shard's ``gateway_leases`` row (one per shard, the
same gateway id in each), the frame log, and a command follower on that shard's subjects only
(``chargeledger.<shard>.…``; unqualified for ``main``), so a command is checked against, and sent
from, the store of the shard it came from.

A connection starts with the ShardedGateway as its :class:`~pile_link.context.LinkContext`; its login
(``handlers/login.py``) asks :meth:`ShardedGateway.bind`, which finds the pile's shard in the
:class:`~adapters.postgres.shards.ShardDirectory` (:class:`PileShards`: known piles at once, the misses
of the logins that arrive together in one query) and hands the connection to that shard's engine
for the rest of its life (``link.gateway``). A pile no shard has is refused as an unknown pile, as
a single gateway refuses it.

Why engines rather than a shard argument on every call: the link and its handlers reach the ledger,
the queues and the counters through ``link.gateway``; binding that to the shard's engine at login
keeps all of them, and the single-shard gateway, unchanged (a single shard is a plain Gateway).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from adapters.postgres.shards import ShardDirectory
from domain.clock import utcnow
from domain.errors import NotFound
from pile_link.batches import Batches
from pile_link.gateway import LOGIN_DEADLINE, Gateway
from pile_link.handlers import routes
from pile_link.link import PileLink

log = logging.getLogger("chargeledger.pile_link")

MAX_BATCH = 2000  # pile numbers looked up in one query; more wait for the next


class PileShards:
    """pile number -> shard, for logins. A pile never moves (it is its tenant's, and a tenant never
    moves), so a pile found once is known for the life of the process; the piles not known that log
    in while one lookup runs are the next lookup (one query for a batch, in a thread of its own, never
    behind the ledger's pools). The directory remembers an unknown number as unknown for a few
    seconds only (a pile registered a moment later is found)."""

    def __init__(self, directory: ShardDirectory, stats: Counter[str]) -> None:
        self.directory = directory
        self.stats = stats
        self.known: dict[str, str] = {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pile shards")
        self.batches: Batches[str | None] = Batches(self.look_up, MAX_BATCH, self.counted)

    async def shard_of(self, pile_no: str) -> str | None:
        """The pile's shard; None if no shard has it. Raises what the directory's query raised (an outage)."""
        shard = self.known.get(pile_no)
        return shard if shard is not None else await self.batches.ask(pile_no)

    async def look_up(self, pile_nos: list[str]) -> dict[str, str]:
        found = await asyncio.get_running_loop().run_in_executor(
            self.executor, functools.partial(self.directory.shards_of_piles, pile_nos))
        self.known.update({pile_no: shard for pile_no, shard in found.items() if shard is not None})
        return found

    def counted(self, seconds: float) -> None:
        self.stats["shard_lookups"] += 1

    def close(self) -> None:
        self.executor.shutdown(wait=True)


class ShardedGateway:
    """The YKC gateway for every shard of ``ledgers`` (shard name -> Ledger; ``urls``: their databases)
    on one port. ``options`` are the :class:`~pile_link.gateway.Gateway`'s, given to every engine."""

    def __init__(self, ledgers: Mapping[str, Any], urls: Mapping[str, str], directory: ShardDirectory, *,
                 nats_url: str, host: str = "127.0.0.1", port: int = 0, gateway_id: str | None = None,
                 clock: Callable[[], datetime] = utcnow, login_deadline: float = LOGIN_DEADLINE,
                 **options: Any) -> None:
        self.host, self.port = host, port
        self.gateway_id = gateway_id or f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock
        self.login_deadline = login_deadline
        self.stats: Counter[str] = Counter()  # every engine's counters too: one gateway's figures
        self.engines = {name: Gateway(ledger, database_url=urls[name], nats_url=nats_url, gateway_id=self.gateway_id,
                                      clock=clock, login_deadline=login_deadline, shard=name, stats=self.stats,
                                      **options)
                        for name, ledger in ledgers.items()}
        self.shards = PileShards(directory, self.stats)
        self.accepted: set[PileLink] = set()  # connections not logged in yet (then their engine's)
        self._server: asyncio.AbstractServer | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        for engine in self.engines.values():
            await engine.start(listen=False)
        self._server = await asyncio.get_running_loop().create_server(lambda: PileLink(self, routes), self.host,
                                                                      self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("gateway %s listening on %s:%s for shards %s", self.gateway_id, self.host, self.port,
                 ", ".join(self.engines))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self.accepted):
            await link.close("gateway stopping")
        for engine in self.engines.values():
            await engine.stop()
        self.shards.close()

    # ---- what a connection needs before its login (pile_link/context.py) --------------------------
    def loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def link_accepted(self, link: PileLink) -> None:
        self.accepted.add(link)
        self.stats["connections"] += 1

    async def link_closed(self, link: PileLink, reason: str) -> None:
        self.accepted.discard(link)  # closed before its login bound it to a shard

    async def bind(self, link: PileLink, pile_no: str) -> Gateway:
        """The engine of the pile's shard, which serves ``link`` from now on; NotFound for a pile no
        shard served here has (refused as an unknown pile)."""
        shard = await self.shards.shard_of(pile_no)
        engine = self.engines.get(shard) if shard is not None else None
        if engine is None:
            raise NotFound(f"no pile {pile_no}" if shard is None else f"pile {pile_no} is on shard {shard}, "
                           "which this gateway does not serve", pile_no=pile_no)
        self.accepted.discard(link)
        if not link.closed:
            engine.connections.add(link)
        link.gateway = engine
        return engine

    # ---- the gateway as a whole (metrics, the state page, tests) -----------------------------------
    @property
    def links(self) -> dict[str, PileLink]:
        """The piles logged in here, every shard's."""
        return {pile_no: link for engine in self.engines.values() for pile_no, link in engine.links.items()}

    @property
    def connections(self) -> set[PileLink]:
        """Every connection open here, logged in or not."""
        return self.accepted.union(*(engine.connections for engine in self.engines.values()))

    def queue_depths(self) -> dict[str, int]:
        """What waits in each kind of write-behind queue, over the shards."""
        depths: Counter[str] = Counter()
        for engine in self.engines.values():
            for queue in (engine.readings, engine.pile_changes, engine.offline_sessions, engine.frames.queue):
                depths[queue.name] += len(queue.pending)
        return dict(depths)
