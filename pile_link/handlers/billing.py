"""The pile's billing model: checked (0x05 → 0x06), requested (0x09 → 0x0A), pushed and answered (0x57).

A model the pile took is recorded as confirmed on the pile, so the gateway knows when it is owed
the tariff in force (:meth:`pile_link.link.PileLink.push_tariff_when_idle` sends it).
"""

from __future__ import annotations

import logging

from pile_link.downlink import billing_model
from pile_link.handlers.table import routes
from pile_link.link import PileLink
from pile_link.ykc import (
    BillingModelReply,
    BillingModelRequest,
    BillingModelSetAck,
    BillingModelVerify,
    BillingModelVerifyAck,
    Frame,
)

log = logging.getLogger("chargeledger.pile_link")


@routes.handles(BillingModelVerify)
async def on_billing_verify(link: PileLink, frame: Frame, msg: BillingModelVerify) -> None:
    same = await link.call(link.gateway.ledger.billing_model_matches, link.pile_no, msg.model_no)
    link.reply(frame, BillingModelVerifyAck(msg.pile_no, msg.model_no, 0 if same else 1))


@routes.handles(BillingModelRequest)
async def on_billing_request(link: PileLink, frame: Frame, msg: BillingModelRequest) -> None:
    tariff = await link.call(link.gateway.tariff_for_pile, link.pile_no)
    link.reply(frame, BillingModelReply(**billing_model(link.pile_no, tariff)))
    await link.call(link.gateway.ledger.confirm_billing_model, link.pile_no, tariff.id, tariff.tariff_version,
                    link.now())


@routes.handles(BillingModelSetAck)
async def on_billing_set_ack(link: PileLink, frame: Frame, msg: BillingModelSetAck) -> None:
    ok = msg.result == 1
    if ok and link.pushed_tariff is not None:
        await link.call(link.gateway.ledger.confirm_billing_model, link.pile_no, *link.pushed_tariff, link.now())
    link.pushed_tariff = None
    await link.call(link.gateway.ledger.answer_pile_command, link.pile_no, "push_tariff", ok,
                    "" if ok else "pile refused the billing model", link.now())
