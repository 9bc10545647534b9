"""``chargeledger demo --serve`` (and ``make demo`` at a terminal): after the scripted day, the demo stays
live until Ctrl-C or SIGTERM, in this process:

* the YKC gateway with a charging fleet (``adapters/cli/demo_fleet.py``);
* the projections following the ledger, as ``chargeledger projections run`` does (a thread);
* the relay (the demo's own, already running);
* the API with the console, the 经营大屏 and the driver H5 pages on http://127.0.0.1:8000 (a free port
  if 8000 is taken; uvicorn in a thread), signed with ``CHARGELEDGER_TOKEN_KEY`` or a per-run key;
* a fake WeChat Pay platform on loopback (``simulation.payment_platforms.FakeWeChat``, keys generated
  per run) configured as the demo tenant's payment channel ``wx-demo``: a top-up on the H5 page is
  paid by the fake, whose signed notification credits the wallet through the real callback;
* a tenant admin ``demo-admin`` with a per-run random password, and the H5 demo login
  (``CHARGELEDGER_H5_DEMO_LOGIN``) for the demo tenant's channel, in this process only.

On the signal everything it started stops, charges settle (a few seconds' drain), and it returns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import string
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from adapters.cli.demo_fleet import H5_PILE, SPEED, LiveFleet, build_network
from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from simulation.payment_platforms import FakeWeChat

log = logging.getLogger("chargeledger")

PORT = 8000
CHANNEL = "wx-demo"
ADMIN = "demo-admin"
PAY_AFTER = 2.0  # seconds between a top-up's prepay and the fake's "the driver paid" notification


def listening_socket(port: int = PORT) -> socket.socket:
    """A socket bound to 127.0.0.1:``port``, or to a free port if that one is taken."""
    for wanted in (port, 0):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", wanted))
        except OSError:
            sock.close()
            continue
        sock.set_inheritable(True)
        return sock
    raise OSError("no free port on 127.0.0.1")


def payment_channel(ledger: Ledger, tenant: UUID) -> tuple[FakeWeChat, str]:
    """The fake WeChat Pay on loopback and the demo tenant's channel on it; the channel's credentials are
    sealed (as always) under a per-run key, returned as a ``CHARGELEDGER_PAYMENT_KEYS`` setting."""
    from adapters.payments.config import Channels, SecretBox

    keys = SecretBox.generate_setting()
    wechat = FakeWeChat(auto_pay=PAY_AFTER)
    Channels(ledger.payments, SecretBox.from_setting(keys)).configure(tenant, CHANNEL, "wechat", wechat.config(),
                                                                      "ops@demo")
    return wechat, keys


async def demo_admin(database_url: str, tenant: UUID) -> tuple[str, str]:
    """A tenant admin of the demo tenant with a fresh random password: (user name, password)."""
    from psycopg_pool import AsyncConnectionPool

    from adapters.api.auth import TENANT_ADMIN, hash_password
    from adapters.postgres.operator_users import OperatorUsers

    password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))
    hashed = await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False)
    await pool.open(wait=True)
    try:
        users = OperatorUsers(pool)
        await users.create_schema()
        for name in (ADMIN, *(f"{ADMIN}-{secrets.token_hex(3)}" for _ in range(5))):  # a database used before
            if await users.add(name, hashed, TENANT_ADMIN, "demo", tenant):
                return name, password
    finally:
        await pool.close()
    raise RuntimeError("no free demo user name")


@contextmanager
def api_server(ledger: Ledger, database_url: str, tenant: UUID, wechat: FakeWeChat, keys: str,
               sock: socket.socket, base: str) -> Iterator[None]:
    """The API with the console's pages (as ``chargeledger api`` serves them) in a thread, on ``sock``."""
    import uvicorn

    from adapters.api.app import create_app
    from adapters.api.auth import AuthSettings
    from adapters.api.driver.settings import DriverApiSettings
    from adapters.api.guards import ServerSettings, server_config
    from adapters.web.mount import mount, settings_from_env

    auth = AuthSettings.from_env() if os.environ.get("CHARGELEDGER_TOKEN_KEY") else AuthSettings.generate()
    driver = DriverApiSettings(keys, base, gateways={"wechat": wechat.url}, wechat_api=wechat.url)
    server = ServerSettings.from_env(os.environ)
    app = create_app(ledger, database_url, auth, driver=driver, server=server)
    # the H5 demo login, for this tenant's channel and this process only (never on by default)
    mount(app, settings_from_env({**os.environ, "CHARGELEDGER_H5_DEMO_LOGIN": f"{tenant}/{CHANNEL}"}))
    config = server_config(app, server, host="127.0.0.1", port=sock.getsockname()[1],
                           log_level=os.environ.get("LOG_LEVEL", "warning").lower())
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
    try:
        yield
    finally:
        uv.should_exit = True
        thread.join(timeout=server.shutdown_timeout + 5)
        app.state.pool.close()


@contextmanager
def running_projections(ledger: Ledger, database_url: str) -> Iterator[None]:
    """The read views following the ledger in a thread, as ``chargeledger projections run`` does."""
    from projections.runner import Projections

    projections = Projections(ledger.applications, eventsourcing_env(database_url))
    stop = threading.Event()
    thread = threading.Thread(target=projections.run_forever, args=(stop,), name="projections", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        projections.close()


def serve(ledger: Ledger, day: dict[str, Any], database_url: str, nats_url: str,
          out: Callable[[str], None] = print) -> None:
    """Run the live demo until SIGINT or SIGTERM. ``day``: the scripted day's tenant, station, tariff and
    piles (what ``adapters.cli.demo.run_demo`` keeps); ``nats_url`` carries the gateway's NATS user."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        asyncio.run(_serve(ledger, day, database_url, nats_url, out))
    finally:
        signal.signal(signal.SIGTERM, previous)  # the loop's handler goes with it; the caller's comes back


async def _serve(ledger: Ledger, day: dict[str, Any], database_url: str, nats_url: str,
                 out: Callable[[str], None]) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    network = build_network(ledger, day["tenant"], day["station"], day["tariff"], day["piles"])
    wechat, keys = payment_channel(ledger, network.tenant)
    sock = listening_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    fleet = LiveFleet(ledger, network, database_url, nats_url)
    try:
        user, password = await demo_admin(database_url, network.tenant)
        with running_projections(ledger, database_url), \
                api_server(ledger, database_url, network.tenant, wechat, keys, sock, base):
            try:
                await fleet.start()
                announce(out, base, user, password, fleet, wechat)
                await watch(out, fleet, wechat, stopping)
                out("\nstopping: the drivers go home; every charge is stopped at its pile and settled")
            finally:
                left = await fleet.stop()
            out("every charge settled" if not left else f"still unconfirmed at the piles: {', '.join(left)}")
    finally:
        wechat.close()
        sock.close()


def announce(out: Callable[[str], None], base: str, user: str, password: str, fleet: LiveFleet,
             wechat: FakeWeChat) -> None:
    guns = fleet.charging()[1]
    out(f"""
the demo is live; Ctrl-C (or SIGTERM) stops it
  console      {base}/console/
  login        {user} / {password}   (tenant admin of Demo Charging Co.; a new password every run)
  经营大屏     {base}/console/screen
  driver H5    {base}/c/{H5_PILE}01   (a gun's QR link: tap 演示登录 / Demo sign-in, top up, start)
  payments     fake WeChat Pay (demo only, {wechat.url}): pays every top-up, signs its notification
  YKC gateway  127.0.0.1:{fleet.gateway.port}: {len(fleet.piles)} simulated piles ({guns} guns) at x{SPEED} speed, drivers
               arriving by card or app; pile {H5_PILE} is left for you
  views        the projections follow the ledger; the relay publishes every event to NATS JetStream
""")


async def watch(out: Callable[[str], None], fleet: LiveFleet, wechat: FakeWeChat, stopping: asyncio.Event) -> None:
    """Until ``stopping``: each payment the fake made, and a line on the fleet every minute."""
    seen, last = 0, time.monotonic()
    while not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), 1.0)
        except TimeoutError:
            pass
        for out_trade_no, status in wechat.paid[seen:]:
            out(f"fake WeChat Pay (demo only): top-up {out_trade_no} paid; our callback answered {status}")
        seen = len(wechat.paid)
        if time.monotonic() - last >= 60:
            last = time.monotonic()
            charging, guns = fleet.charging()
            out(f"{time.strftime('%H:%M:%S')}  guns charging {charging}/{guns}, charges settled "
                f"{fleet.finished()}, app starts {fleet.app_starts.started}, counter top-ups {fleet.refills}")
