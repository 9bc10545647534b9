"""NATS checks who is speaking: one user per role, and only the relay may put events on the stream.

Against the embedded server configured from adapters.servers.nats_users, over real connections.
"""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js.api import DeliverPolicy

from adapters.servers import nats_users
from adapters.servers.nats_users import ADMIN, AUDITOR, GATEWAY, READER, RELAY, STREAM, SUBJECT_PREFIX
from adapters.followers.relay.stream import ensure_stream
from adapters.servers.nats_server import EmbeddedNats
from adapters.servers.resolve import nats_url_for, redacted

FORGED = f"{SUBJECT_PREFIX}.Sessions.ChargingSession.Opened"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    nats_server = EmbeddedNats(tmp_path_factory.mktemp("nats-auth") / "nats")
    yield nats_server.start()
    nats_server.stop()


async def connect(url: str, role: str, errors: list[Exception] | None = None) -> Any:
    async def error_cb(error: Exception) -> None:
        if errors is not None:
            errors.append(error)

    return await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False,
                              error_cb=error_cb, **nats_users.connect_options(role))


async def stream_messages(url: str) -> int:
    nc = await connect(url, ADMIN)
    try:
        return (await nc.jetstream().stream_info(STREAM)).state.messages
    finally:
        await nc.close()


async def ready_stream(server: EmbeddedNats) -> None:
    nc = await connect(server.url_for(RELAY), RELAY)
    try:
        await ensure_stream(nc.jetstream(timeout=5))  # the relay may make the stream
    finally:
        await nc.close()


def test_each_role_has_its_own_user_and_the_passwords_are_private(server: EmbeddedNats) -> None:
    urls = {role: server.url_for(role) for role in nats_users.ROLES}
    assert len(set(urls.values())) == len(nats_users.ROLES)
    assert all(url.startswith(f"nats://{role}:") for role, url in urls.items())
    assert stat.S_IMODE(Path(server.credentials).stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(server.config).stat().st_mode) == 0o600
    assert set(json.loads(Path(server.credentials).read_text())) == set(nats_users.ROLES)
    assert "***" in redacted(urls[GATEWAY]) and server._passwords()[GATEWAY] not in redacted(urls[GATEWAY])
    assert nats_url_for(READER, "nats://elsewhere:4222", [server]) == urls[READER]
    assert nats_url_for(READER, "nats://elsewhere:4222", []) == "nats://elsewhere:4222"


@pytest.mark.parametrize("url", ["nats://127.0.0.1:{port}", "nats://gateway:wrong-password@127.0.0.1:{port}",
                                 "nats://nobody:x@127.0.0.1:{port}"])
def test_a_connection_without_a_valid_user_is_refused(server: EmbeddedNats, url: str) -> None:
    async def attempt() -> None:
        await connect(url.format(port=server.port), READER)

    with pytest.raises((nats.errors.Error, OSError)):
        asyncio.run(attempt())


def test_the_relay_publishes_events_and_no_follower_can(server: EmbeddedNats) -> None:
    async def scenario() -> None:
        await ready_stream(server)
        before = await stream_messages(server.url)
        relay = await connect(server.url_for(RELAY), RELAY)
        try:
            ack = await relay.jetstream(timeout=5).publish(f"{SUBJECT_PREFIX}.Sessions.ChargingSession.Settled", b"{}")
            assert ack.stream == STREAM
        finally:
            await relay.close()
        for role in (GATEWAY, READER, AUDITOR):
            errors: list[Exception] = []
            nc = await connect(server.url_for(role), role, errors)
            try:
                with pytest.raises((nats.errors.Error, asyncio.TimeoutError)):
                    await nc.jetstream(timeout=2).publish(FORGED, b'{"pile_no": "32010600019236"}',
                                                          headers={"Nats-Msg-Id": f"forged-{role}"})
                await nc.publish(FORGED, b"core publish, no ack")  # a plain publish is dropped too
                await nc.flush()
                await asyncio.sleep(0.2)
                assert any("permissions violation" in str(e).lower() for e in errors), (role, errors)
            finally:
                await nc.close()
        assert await stream_messages(server.url) == before + 1  # only the relay's event

    asyncio.run(scenario())


def test_a_follower_follows_the_stream_but_cannot_change_it(server: EmbeddedNats) -> None:
    async def scenario() -> None:
        await ready_stream(server)
        for role in (GATEWAY, READER):
            nc = await connect(server.url_for(role), role)
            got: asyncio.Queue[Any] = asyncio.Queue()
            try:
                js = nc.jetstream(timeout=5)
                await js.subscribe(f"{SUBJECT_PREFIX}.>", cb=got.put, ordered_consumer=True,
                                   deliver_policy=DeliverPolicy.NEW)
                relay = await connect(server.url_for(RELAY), RELAY)
                await relay.jetstream(timeout=5).publish(f"{SUBJECT_PREFIX}.Registry.Pile.Connected", role.encode())
                await relay.close()
                assert (await asyncio.wait_for(got.get(), 5)).data == role.encode()
                with pytest.raises(nats.errors.Error):
                    await js.delete_stream(STREAM)
                with pytest.raises(nats.errors.Error):
                    await js.purge_stream(STREAM)
            finally:
                await nc.close()
        assert await stream_messages(server.url) >= 2

    asyncio.run(scenario())


def test_a_role_cannot_read_another_roles_replies(server: EmbeddedNats) -> None:
    async def scenario() -> None:
        errors: list[Exception] = []
        nc = await connect(server.url_for(GATEWAY), GATEWAY, errors)
        try:
            await nc.subscribe(f"{nats_users.inbox_prefix(RELAY)}.>")
            await nc.subscribe("_INBOX.>")
            await nc.flush()
            await asyncio.sleep(0.2)
            assert sum("permissions violation" in str(e).lower() for e in errors) == 2, errors
        finally:
            await nc.close()

    asyncio.run(scenario())


def test_the_server_keeps_its_users_across_a_restart(tmp_path: Path) -> None:
    first = EmbeddedNats(tmp_path / "nats").start()
    url = first.url_for(GATEWAY)
    first.stop()
    again = EmbeddedNats(tmp_path / "nats", port=first.port).start()
    try:
        assert again.url_for(GATEWAY) == url

        async def attempt() -> None:
            nc = await connect(url, GATEWAY)
            await nc.close()

        asyncio.run(attempt())
    finally:
        again.stop()


def test_a_start_reaches_the_pile_with_each_process_on_its_own_role(ledger: Any, database_url: str, nats_url: str,
                                                                     nats_role_urls: dict[str, str]) -> None:
    """The relay with the relay's user, the gateway with the gateway's: the whole path works."""
    from datetime import datetime, timezone

    from adapters.cli.relay import running_relay
    from pile_link.gateway import Gateway
    from pile_link.ykc import RemoteStart
    from tests.factories import build_world
    from tests.ykc_pile import ScriptedPile

    world = build_world(ledger)
    with running_relay(ledger, database_url, nats_role_urls[RELAY]) as relay:
        async def scenario() -> None:
            while not relay.caught_up():
                await asyncio.sleep(0.02)
            gateway = Gateway(ledger, database_url=database_url, nats_url=nats_role_urls[GATEWAY],
                              sweep_interval=3600)
            await gateway.start()
            pile = ScriptedPile(world.pile_no)
            try:
                await pile.login(gateway.port)
                trade_no = await gateway.run(ledger.request_start, pile_no=world.pile_no, gun_no=1,
                                             wallet_id=world.wallet_id, hold_fen=20_00,
                                             at=datetime.now(timezone.utc), author="driver-1")
                assert (await pile.expect(RemoteStart)).trade_no == trade_no
            finally:
                await pile.close()
                await gateway.stop()

        asyncio.run(asyncio.wait_for(scenario(), 60))
