"""A fleet over two gateways (issue 15, item 2): ``chargeledger serve --role gateway`` twice, each on its own
port, behind a TCP balancer (``Balancer``: each new connection goes to the first gateway that accepts it,
as a balancer's health check would send it), a relay, and simulated piles (``chargeledger simulate``).

The piles charge on gateway 1, which is killed (kill -9): they reconnect through the balancer to gateway 2
and are served there at once. A stop asked after the move reaches each pile through gateway 2 (commands
go to whichever gateway holds the pile, through NATS: no table says where a pile is), and every session
settles once. A pile that moves while its old gateway still holds a dead connection to it is not recorded
offline by that gateway when it notices later (``test_a_late_disconnect_at_the_old_gateway...``)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone

import psycopg
import pytest

from adapters.followers.log_follower import iter_events
from adapters.servers.nats_users import GATEWAY, RELAY
from adapters.servers.processes import free_port
from domain.books import books_of
from domain.ledger import Ledger
from domain.registry import Pile
from domain.session import ChargingSession
from pile_link.simulator.fleet import pile_numbers
from tests.e2e.relay_harness import CLI, Processes
from tests.e2e.relay_harness import processes  # noqa: F401  (the fixture)
from tests.factories import PRICES, SLOTS
from tests.integration.test_relay import wait_for

PILES, FIRST_PILE = 4, "99000000000101"


class Balancer:
    """A TCP balancer on loopback: a new connection goes to the first backend that accepts it; when
    either side closes, so does the other (the pile sees its link drop and reconnects). ``hold_backend``
    keeps the backend side of connections open after the pile's side is gone (a half-dead link the old
    gateway only notices by its heartbeat timeout)."""

    def __init__(self, backends: list[int]) -> None:
        self.backends, self.port = backends, free_port()
        self.hold_backend = False
        self.held: list[asyncio.StreamWriter] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="balancer", daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    def order(self) -> list[int]:
        """The backends to try for a new connection, in turn (here: always the first that accepts)."""
        return list(self.backends)

    def refused(self, port: int, error: OSError) -> None:
        """A backend refused a connection (a subclass's health check hears of it)."""

    def ended(self, port: int) -> None:
        """A backend ended a link from its side (its process gone)."""

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        for port in self.order():
            try:
                backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError as error:
                self.refused(port, error)
        else:
            client_writer.close()
            return
        up = asyncio.ensure_future(self._pipe(client_reader, backend_writer))
        down = asyncio.ensure_future(self._pipe(backend_reader, client_writer))
        try:
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # the balancer closing
        if down.done() and not up.done():
            self.ended(port)
        up.cancel()
        down.cancel()
        client_writer.close()
        if self.hold_backend:
            self.held.append(backend_writer)
        else:
            backend_writer.close()

    def cut_clients(self) -> None:
        """Drop every pile's side of its connection (keeping the backend side if ``hold_backend``)."""
        async def cut() -> None:
            for task in asyncio.all_tasks():
                if task.get_coro().__name__ == "_pipe":  # type: ignore[union-attr]
                    task.cancel()
        asyncio.run_coroutine_threadsafe(cut(), self.loop).result(10)

    def release_held(self) -> None:
        async def close() -> None:
            for writer in self.held:
                writer.close()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)

    def __enter__(self) -> Balancer:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self.port), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def fleet(ledger: Ledger) -> tuple[list[str], object]:
    tenant = ledger.create_tenant("Fleet Co.", "admin")
    station = ledger.create_station(tenant, "Two gateways", "2 Route Road", 31.23, 121.47, "admin")
    piles = pile_numbers(FIRST_PILE, PILES)
    for pile_no in piles:
        ledger.register_pile(station, pile_no, "DC", 1, "admin")
    ledger.assign_tariff(ledger.create_tariff(tenant, "standard", PRICES, SLOTS, "admin"), "admin", station_id=station)
    wallet = ledger.open_wallet(tenant, "fleet-driver", "admin")
    ledger.top_up(wallet, key="topup:fleet", amount=1000_00, provider="cash", payment_ref="counter-1")
    return piles, wallet


def holder(ledger: Ledger, pile_no: str) -> int | None:
    """The pid of the gateway the pile's connection names (its id is ``host:pid``); None: offline."""
    pile = ledger.registry.get(Pile.create_id(pile_no), Pile, "pile", fresh=True)
    return int(pile.connection["gateway"].rsplit(":", 1)[-1]) if pile.online and pile.connection else None


def state(ledger: Ledger, trade_no: str) -> ChargingSession:
    return ledger.sessions.get(ChargingSession.create_id(trade_no), ChargingSession, "session", fresh=True)


@pytest.fixture
def deployment(ledger: Ledger, database_url: str, nats_url: str, nats_role_urls: dict[str, str],
               processes: Processes) -> Iterator[tuple[list[str], object, list, Balancer]]:  # noqa: F811
    piles, wallet = fleet(ledger)
    processes.env.update(DATABASE_URL=database_url, LOG_LEVEL="INFO")  # the gateways say when a pile goes
    ports = [free_port(), free_port()]
    processes.env["NATS_URL"] = nats_role_urls[RELAY]
    processes.start("relay", "-c", CLI, "serve", "--role", "relay")
    processes.env["NATS_URL"] = nats_role_urls[GATEWAY]
    gateways = [processes.start(f"gateway-{i}", "-c", CLI, "serve", "--role", "gateway", "--host", "127.0.0.1",
                                "--port", str(port), "--no-relay", "--no-watchdog") for i, port in enumerate(ports, 1)]
    wait_for(lambda: all(_accepts(p) for p in ports), timeout=60)
    with Balancer(ports) as balancer:
        processes.start("simulate", "-c", CLI, "simulate", "--port", str(balancer.port), "--piles", str(PILES),
                        "--guns", "1", "--first-pile", FIRST_PILE, "--plugged", "--speed", "30", "--heartbeat", "2",
                        "--record-retry", "1", "--drain", "--drain-timeout", "60", "--progress", "1000")
        wait_for(lambda: all(holder(ledger, p) == gateways[0].pid for p in piles), timeout=60)
        yield piles, wallet, gateways, balancer


def _accepts(port: int) -> bool:
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def start_all(ledger: Ledger, piles: list[str], wallet: object) -> list[str]:
    now = datetime.now(timezone.utc)
    trades = [ledger.request_start(pile_no=p, gun_no=1, wallet_id=wallet, hold_fen=50_00, at=now, author="driver")
              for p in piles]
    wait_for(lambda: all(state(ledger, t).state == "charging" for t in trades), timeout=60)
    return trades


def stop_all_and_settle(ledger: Ledger, trades: list[str], wallet: object) -> float:
    asked = time.monotonic()
    for trade_no in trades:
        ledger.request_stop(trade_no, "driver", "driver asked", at=datetime.now(timezone.utc))
    wait_for(lambda: all(state(ledger, t).state == "finished" for t in trades), timeout=60)
    took = time.monotonic() - asked
    settled = Counter(ledger.sessions.get(e.originator_id, ChargingSession, "session").trade_no
                      for e in iter_events(ledger.sessions) if type(e).__name__ == "Settled")
    assert settled == Counter({t: 1 for t in trades})
    # a session's capture is the wallet's own transaction, just after its Settled: wait for the last one
    wait_for(lambda: ledger.wallet(wallet).held == 0, timeout=30)  # type: ignore[arg-type]
    books = books_of(iter_events(ledger.wallets))
    assert books.balanced and books.trial_balance == 0
    return took


def test_a_gateway_killed_its_piles_move_to_the_other_and_a_stop_reaches_them_there(
        ledger: Ledger, deployment: tuple, processes: Processes) -> None:  # noqa: F811
    piles, wallet, gateways, _ = deployment
    trades = start_all(ledger, piles, wallet)
    gateways[0].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    gateways[0].wait(30)
    wait_for(lambda: all(holder(ledger, p) == gateways[1].pid for p in piles), timeout=60)
    moved = time.monotonic() - killed
    assert all(state(ledger, t).state == "charging" for t in trades)  # charging on through the move
    settled = stop_all_and_settle(ledger, trades, wallet)
    print(f"\nFLEET piles on gateway 2 {moved:.2f} s after the kill -9 of gateway 1; "
          f"stops asked after the move settled in {settled:.2f} s")
    processes.alive(gateways[1])
    simulate = next(p for p in processes.running if p.name == "simulate")  # type: ignore[attr-defined]
    simulate.send_signal(signal.SIGTERM)
    assert simulate.wait(90) == 0, processes.log(simulate)


def test_a_late_disconnect_at_the_old_gateway_does_not_take_offline_a_pile_that_moved(
        ledger: Ledger, database_url: str, deployment: tuple, processes: Processes) -> None:  # noqa: F811
    """The balancer drops the piles' side of their links but keeps gateway 1's side open: the piles log in
    at gateway 2 (gateway 1 refuses no one: it is simply not chosen, as a balancer may do), and gateway 1
    learns of its dead links only afterwards. Its disconnect must not record offline a pile that gateway 2
    now holds, nor give its session the offline deadline."""
    piles, wallet, gateways, balancer = deployment
    trades = start_all(ledger, piles, wallet)
    balancer.hold_backend, balancer.backends = True, list(reversed(balancer.backends))
    balancer.cut_clients()
    wait_for(lambda: all(holder(ledger, p) == gateways[1].pid for p in piles), timeout=60)
    balancer.release_held()  # gateway 1 sees its old links end now
    gateway_1 = next(p for p in processes.running if p.name == "gateway-1")  # type: ignore[attr-defined]
    wait_for(lambda: all(f"pile {p} offline" in processes.log(gateway_1) for p in piles), timeout=30)
    assert not any(state(ledger, t).offline_since for t in trades)
    stop_all_and_settle(ledger, trades, wallet)  # seconds: gateway 1's queued changes (50 ms) are long written
    with psycopg.connect(database_url) as conn:
        disconnects = conn.execute("SELECT count(*) FROM registry_events WHERE topic LIKE '%Pile.Disconnected'"
                                   ).fetchone()[0]
    assert disconnects == 0
    assert all(holder(ledger, p) == gateways[1].pid for p in piles)
    processes.alive(*gateways)
