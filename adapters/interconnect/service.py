"""The server side of the envelope, independent of HTTP: a request body in, a signed answer out.

:class:`Door` runs the receive pipeline (``tcec/receive.py``), then the interface's handler from
the table (``handlers/``), and turns every outcome into a response envelope signed with the key set
the request used: the handler's object (Ret 0), its :class:`~.tcec.routing.Refusal`, ``-1`` (busy)
when the database is unreachable, ``500`` for anything unexpected (logged with its traceback, never
sent). A request that is answered anything but Ret 0 leaves its envelope unrecorded, so the peer may
send the very same one again. A call answered Ret 0 is noted as the peer's last inbound call
(``tcec_peers.last_inbound_at``, the link's health in the operator API), at most once per
:data:`INBOUND_EVERY` per peer and process, so the note costs a busy peer nothing per call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import psycopg

from adapters.interconnect.store.directory import Store
from adapters.interconnect.tcec.envelope import MESSAGES, ResponseEnvelope, Ret
from adapters.interconnect.tcec.peer import Peer
from adapters.interconnect.tcec.receive import WINDOW, Accepted, Receiver, Refused, answer, not_ours
from adapters.interconnect.tcec.routing import Call, Handlers, Refusal

log = logging.getLogger("chargeledger.interconnect")
INBOUND_EVERY = timedelta(seconds=60)  # how stale a peer's last_inbound_at may be


@dataclass
class Services:
    """What handlers may use (``call.services``): the tables, and the ledger of the process."""

    store: Store
    ledger: Any = None


class Door:
    def __init__(self, services: Services, handlers: Handlers, *, window: timedelta = WINDOW,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.services, self.handlers, self.now = services, handlers, now
        self.receiver = Receiver(services.store, handlers, window=window, now=lambda: self.now())
        self._inbound: dict[UUID, datetime] = {}  # peer -> when this process last noted a call answered Ret 0

    def answer(self, interface: str, body: bytes, authorization: str | None) -> ResponseEnvelope:
        envelope, _ = self.answer_if_ours(interface, body, authorization, pass_on=False)
        return envelope

    def answer_if_ours(self, interface: str, body: bytes, authorization: str | None,
                       pass_on: bool = True) -> tuple[ResponseEnvelope, bool]:
        """(the answer, whether it is this database's to give). With ``pass_on``, an envelope no peer in
        this database signs (unknown OperatorID, or no SigSecret of it matches) is answered False and not
        logged: another shard may hold the peer (adapters/interconnect/shards.py). Nothing was written."""
        try:
            outcome = self.receiver.receive(interface, body, authorization)
        except psycopg.OperationalError as error:
            log.warning("T/CEC %s: database unavailable (%s)", interface[:64], type(error).__name__)
            return answer(None, Ret.BUSY, MESSAGES[Ret.BUSY]), True
        except Exception:  # e.g. sealed secrets that no configured key opens: logged, never sent
            log.exception("T/CEC %s: the pipeline failed", interface[:64])
            return answer(None, Ret.SYSTEM_ERROR, MESSAGES[Ret.SYSTEM_ERROR]), True
        if isinstance(outcome, Refused):
            if pass_on and not_ours(outcome):
                return answer(outcome.peer, outcome.ret, outcome.msg), False
            who = outcome.peer.operator_id if outcome.peer else "?"
            log.info("T/CEC %s from %s refused: Ret %d %s", interface[:64], who, outcome.ret, outcome.msg)
            return answer(outcome.peer, outcome.ret, outcome.msg), True
        return self._handle(outcome), True

    def _handle(self, accepted: Accepted) -> ResponseEnvelope:
        peer, name = accepted.peer, accepted.interface.name
        at = self.now()
        call = Call(peer, accepted.request, accepted.interface, at, self.services)
        try:
            payload = self.handlers.handler(name)(call)
            if not isinstance(payload, accepted.interface.response):
                raise TypeError(f"the {name} handler answered {type(payload).__name__}")
            envelope = answer(peer, Ret.OK, "", payload, name)
            self._noted(peer, at)
            return envelope
        except Refusal as refusal:
            ret, msg = refusal.ret, refusal.msg
        except psycopg.OperationalError as error:
            log.warning("T/CEC %s from %s: database unavailable (%s)", name, peer.operator_id, type(error).__name__)
            ret, msg = Ret.BUSY, MESSAGES[Ret.BUSY]
        except Exception:
            log.exception("T/CEC %s from %s failed", name, peer.operator_id)
            ret, msg = Ret.SYSTEM_ERROR, MESSAGES[Ret.SYSTEM_ERROR]
        self._forget(accepted)
        log.info("T/CEC %s from %s answered Ret %d %s", name, peer.operator_id, ret, msg)
        return answer(peer, ret, msg)

    def _noted(self, peer: Peer, at: datetime) -> None:
        last = self._inbound.get(peer.peer_id)
        if last is not None and timedelta(0) <= at - last < INBOUND_EVERY:
            return
        self._inbound[peer.peer_id] = at
        try:
            self.services.store.peers.mark_inbound(peer.peer_id, at, INBOUND_EVERY)
        except psycopg.Error as error:  # health is not worth a failed answer; the next call notes it
            log.warning("T/CEC: could not note the call of %s (%s)", peer.operator_id, type(error).__name__)
            self._inbound.pop(peer.peer_id, None)

    def _forget(self, accepted: Accepted) -> None:
        try:
            self.services.store.forget(accepted.peer, accepted.fingerprint)
        except psycopg.OperationalError:  # the sighting stays: the peer's resend is refused as a replay
            log.warning("T/CEC: could not let go of a refused envelope of %s", accepted.peer.operator_id)
