"""A pile logs in (0x01), keeps the link alive (0x03) and has its clock set (0x56 → 0x55).

Login binds the connection to the pile the ledger knows (an unknown or disabled pile is refused and
closed), records it connected, sets its clock and starts delivering what it is owed. What it knows
of the pile comes from the gateway's :class:`~pile_link.pile_facts.LoginFacts`, read from the store
for a batch of logins at once.
"""

from __future__ import annotations

import asyncio
import logging

from domain.errors import NotFound, PileUnavailable
from pile_link.handlers.table import routes
from pile_link.link import PileLink, gun_set
from pile_link.ykc import Frame, Heartbeat, HeartbeatAck, Login, LoginAck, TimeSyncAck

log = logging.getLogger("chargeledger.pile_link")


@routes.handles(Login)
async def on_login(link: PileLink, frame: Frame, msg: Login) -> None:
    gateway = link.gateway
    try:
        gateway = await gateway.bind(link, msg.pile_no)  # the pile's shard's engine (pile_link/shards.py)
        pile = await gateway.login_facts.login(msg.pile_no)
    except (NotFound, PileUnavailable) as error:
        gateway.stats["logins_refused"] += 1
        log.warning("%s: login of pile %s refused: %s", link.peer, msg.pile_no, error)
        link.reply(frame, LoginAck(msg.pile_no, 1))
        await link.close(f"login refused: {error.code}")
        return
    if link.closed:  # closed while its login was read (the login deadline passed): nothing recorded
        return
    link.pile_no, link.pile_id, link.logged_in_at = msg.pile_no, pile.pile_id, link.now()
    link.tenant_id = pile.tenant_id  # on the pile's log lines from its next frame on (pile_link/observed.py)
    if link.login_timer is not None:
        link.login_timer.cancel()
        link.login_timer = None  # a cancelled timer still holds its callback and context
    link.timezone = pile.timezone
    link.guns = {n: (status, plugged, faults) for n, status, plugged, faults in pile.guns}
    link.gun_numbers = gun_set(link.guns)
    link.reply(frame, LoginAck(msg.pile_no, 0))
    link.versions = (msg.protocol_version, msg.firmware_version.strip("\x00 "))
    link.record_connected(link.now())
    await gateway.link_opened(link)
    log.info("pile %s online from %s (protocol %s, firmware %s)", msg.pile_no, link.peer,
             msg.protocol_version, msg.firmware_version.strip())
    link.send_time()
    if link.owed is not None:  # logged in again on the same connection
        link.owed.cancel()
    link.owed = asyncio.create_task(gateway.deliver_owed_until_done(link), name=f"owed to {msg.pile_no}")
    link.owed.add_done_callback(link.owed_delivered)


@routes.handles(Heartbeat)
async def on_heartbeat(link: PileLink, frame: Frame, msg: Heartbeat) -> None:
    link.reply(frame, HeartbeatAck(msg.pile_no, msg.gun_no, 0))


@routes.handles(TimeSyncAck)
async def on_time_ack(link: PileLink, frame: Frame, msg: TimeSyncAck) -> None:
    log.debug("pile %s clock set to %s", link.pile_no, msg.time)
