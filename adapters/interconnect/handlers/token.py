"""``query_token``: the caller's OperatorSecret for a Bearer token (note A.4; the policy in store/tokens.py).

The envelope was already authenticated with the peer's SigSecret; here the business check: the
OperatorID inside Data must be the envelope's, and the OperatorSecret the one we issued this peer.
A failure is an answer (Ret 0, ``SuccStat`` 1, ``FailReason`` 1 unknown operator or 2 wrong secret),
not a refusal, as the standard has it.
"""

from __future__ import annotations

import hmac

from adapters.interconnect.handlers.table import handlers
from adapters.interconnect.tcec.models.codes import SuccStat
from adapters.interconnect.tcec.models.token import TokenFailReason, TokenRequest, TokenResponse
from adapters.interconnect.tcec.routing import Call


@handlers.handles("query_token")
def query_token(call: Call) -> TokenResponse:
    request: TokenRequest = call.request
    peer = call.peer
    if request.OperatorID != peer.operator_id:
        return TokenResponse(OperatorID=request.OperatorID, SuccStat=SuccStat.FAILURE,
                             FailReason=TokenFailReason.UNKNOWN_OPERATOR)
    if not hmac.compare_digest(request.OperatorSecret.encode("utf-8"), peer.inbound.operator_secret.encode("utf-8")):
        return TokenResponse(OperatorID=peer.operator_id, SuccStat=SuccStat.FAILURE,
                             FailReason=TokenFailReason.WRONG_SECRET)
    token, seconds_left = call.services.store.issued.issue(peer.peer_id, peer.token_lifetime, call.now)
    return TokenResponse(OperatorID=peer.operator_id, SuccStat=SuccStat.SUCCESS, AccessToken=token,
                         TokenAvailableTime=seconds_left, FailReason=TokenFailReason.NONE)
