"""Answers to the platform's maintenance commands: work parameters (0x51), reboot (0x91), firmware
update (0x93). The first two answer the pile command recorded on the pile.
"""

from __future__ import annotations

import logging

from pile_link.handlers.table import routes
from pile_link.link import PileLink
from pile_link.ykc import Frame, RebootAck, RemoteUpdateAck, WorkParamsAck

log = logging.getLogger("chargeledger.pile_link")


@routes.handles(WorkParamsAck)
async def on_params_ack(link: PileLink, frame: Frame, msg: WorkParamsAck) -> None:
    await link.call(link.gateway.ledger.answer_pile_command, link.pile_no, "set_parameters", msg.result == 1,
                    "", link.now())


@routes.handles(RebootAck)
async def on_reboot_ack(link: PileLink, frame: Frame, msg: RebootAck) -> None:
    await link.call(link.gateway.ledger.answer_pile_command, link.pile_no, "reboot", msg.result == 1, "",
                    link.now())


@routes.handles(RemoteUpdateAck)
async def on_update_ack(link: PileLink, frame: Frame, msg: RemoteUpdateAck) -> None:
    log.info("pile %s: firmware update status %s", link.pile_no, msg.status)
