"""The YKC gateway under test (tests/e2e/test_gateway_*.py and the pile link's other end-to-end tests): a
gateway on real TCP with a relay to real NATS, a settable clock, and the scripted pile's usual first steps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from adapters.cli.relay import running_relay
from domain.ledger import Ledger
from pile_link.gateway import Gateway
from pile_link.ykc import RemoteStart, RemoteStartReply
from tests.factories import PRICES
from tests.ykc_pile import ScriptedPile

PRICE_PER_TIER = tuple(PRICES[t]["electricity"] + PRICES[t]["service"] for t in ("sharp", "peak", "flat", "valley"))
CHARGING, IDLE = 3, 2


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


def run(ledger: Ledger, database_url: str, nats_url: str,
        scenario: Callable[[Gateway, Clock], Awaitable[Any]], **options: Any) -> Any:
    clock = Clock()
    with running_relay(ledger, database_url, nats_url) as relay:
        deadline = time.monotonic() + 30
        while not relay.caught_up():  # the world's events published before the gateway follows only new ones
            assert time.monotonic() < deadline, "relay did not catch up"
            time.sleep(0.02)

        async def main() -> Any:
            gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, clock=clock,
                              sweep_interval=3600, **options)
            await gateway.start()
            try:
                return await asyncio.wait_for(scenario(gateway, clock), 60)
            finally:
                await gateway.stop()
        return asyncio.run(main())


async def start_from_app(gateway: Gateway, clock: Clock, world: Any, pile: ScriptedPile, hold: int = 50_00,
                         gun_no: int = 1) -> tuple[Any, RemoteStart]:
    trade_no = await gateway.run(gateway.ledger.request_start, pile_no=pile.pile_no, gun_no=gun_no,
                                 wallet_id=world.wallet_id, hold_fen=hold, at=clock(), author="driver-1")
    frame, start = await pile.expect_frame(RemoteStart)
    assert (start.trade_no, start.gun_no, start.balance_fen) == (trade_no, f"{gun_no:02d}", hold)
    return frame, start


def local(clock: Clock) -> datetime:
    """The pile's wall clock (naive China time), as it writes times into its frames."""
    return clock().astimezone(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)


async def started(gateway: Gateway, clock: Clock, world: Any, hold: int = 50_00,
                  acknowledged: bool = True) -> tuple[ScriptedPile, RemoteStart]:
    """A pile logged in, a start from the app received (0x34) and, unless told otherwise, accepted (0x33)."""
    pile = ScriptedPile(world.pile_no)
    await pile.login(gateway.port)
    _, start = await start_from_app(gateway, clock, world, pile, hold=hold)
    if acknowledged:
        pile.send(RemoteStartReply(start.trade_no, world.pile_no, "01", 1, 0))
    return pile, start


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def _events(app: Any) -> list[Any]:
    from adapters.followers.log_follower import iter_events
    return list(iter_events(app))
