"""The receive pipeline: from a request body to (peer, business object) or a refusal, independent of HTTP.

The order is the note's (A.3), and the first check that fails decides the answer:

1. the body is a well-formed envelope (``OperatorID``, ``Data``, ``TimeStamp``, ``Seq``, ``Sig``,
   all strings, each in its format) ......................................... else **4003**
2. the ``OperatorID`` is a peer of ours ...................... else **4004** (unsigned: no key to sign)
3. ``Sig`` is right under that peer's inbound ``SigSecret`` (constant time); several tenants may
   link the same OperatorID, each with its own secret: the one whose secret signs it is the peer
   ........................................................................... else **4001**
4. the ``Authorization: Bearer`` token is one we issued **this** peer and still valid (not for
   ``query_token``) ........................................................... else **4002**
5. ``TimeStamp`` within ``window`` of our clock, and this authenticated envelope not seen before in
   that window (shared by every process through the directory) ............... else **4003**
6. ``Data`` decrypts under the peer's inbound key set and is JSON ............... else **4004**
7. the interface is served here and open to the peer's role, and ``Data`` fits its model
   ...................................................................... else **4004** naming the field

A refused envelope's sighting is let go again (:meth:`Directory.forget`), so a refusal writes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol
from uuid import UUID

from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.codec import CodecError
from adapters.interconnect.tcec.envelope import (EnvelopeError, RequestEnvelope, ResponseEnvelope, Ret,
                                                 parse_timestamp)
from adapters.interconnect.tcec.interfaces import TOKEN, Interface
from adapters.interconnect.tcec.models.base import DataError, Model
from adapters.interconnect.tcec.peer import Peer

WINDOW = timedelta(minutes=5)


class Directory(Protocol):
    """What the pipeline asks of the peer store (adapters.interconnect.store implements it on Postgres)."""

    def peers_by_operator(self, operator_id: str) -> Sequence[Peer]:
        """Every enabled peer with this OperatorID (one per tenant that links it)."""

    def token_owner(self, token: str, now: datetime) -> UUID | None:
        """The peer a still-valid token we issued belongs to."""

    def first_sight(self, peer: Peer, fingerprint: bytes, keep_until: datetime) -> bool:
        """Record the envelope; False if it was already recorded (a replay)."""

    def forget(self, peer: Peer, fingerprint: bytes) -> None:
        """Let go of a sighting whose envelope was refused after all (nothing was done)."""


@dataclass(frozen=True)
class Accepted:
    peer: Peer
    interface: Interface
    request: Model
    envelope: RequestEnvelope
    fingerprint: bytes


@dataclass(frozen=True)
class Refused:
    ret: Ret
    msg: str
    peer: Peer | None  # the key set to sign the answer with; None: unsigned


def not_ours(refused: Refused) -> bool:
    """Refused at step 2 or 3: no peer in this directory signs the envelope (its OperatorID is unknown
    here, unsigned 4004, or none of its SigSecrets matches, 4001). Nothing was recorded yet, so another
    directory (a tenant shard, adapters/interconnect/shards.py) may still take it."""
    return refused.ret == Ret.BAD_SIG or (refused.ret == Ret.BAD_DATA and refused.peer is None)


def fingerprint(envelope: RequestEnvelope) -> bytes:
    """SHA-256 over the length-prefixed authenticated fields (the same Seq in another process differs
    in Data or Sig, so it is not taken for a replay; note A.8)."""
    digest = hashlib.sha256()
    for part in (envelope.operator_id, envelope.timestamp, envelope.seq, envelope.sig.upper(), envelope.data):
        raw = part.encode("utf-8")
        digest.update(len(raw).to_bytes(4, "big") + raw)
    return digest.digest()


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class Receiver:
    """Runs the pipeline for the interfaces ``served`` (name -> Interface, the handler table's)."""

    def __init__(self, directory: Directory, served: Mapping[str, Interface], *, window: timedelta = WINDOW,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.directory, self.served, self.window, self.now = directory, served, window, now

    def receive(self, interface: str, body: bytes, authorization: str | None) -> Accepted | Refused:
        try:
            envelope = RequestEnvelope.parse(body)
        except EnvelopeError as error:
            return Refused(Ret.BAD_ENVELOPE, f"POST参数不合法: {error}", None)
        candidates = self.directory.peers_by_operator(envelope.operator_id)
        if not candidates:
            return Refused(Ret.BAD_DATA, f"无此运营商: OperatorID {envelope.operator_id} is not a peer of ours", None)
        peer = next((p for p in candidates if p.inbound.keys.verify_request(
            envelope.operator_id, envelope.data, envelope.timestamp, envelope.seq, envelope.sig)), None)
        if peer is None:
            return Refused(Ret.BAD_SIG, "签名错误: Sig does not match OperatorID+Data+TimeStamp+Seq",
                           candidates[0] if len(candidates) == 1 else None)
        now = self.now()
        if interface != TOKEN:
            token = bearer(authorization)
            if token is None:
                return Refused(Ret.BAD_TOKEN, "Token错误: send Authorization: Bearer <AccessToken from query_token>",
                               peer)
            if self.directory.token_owner(token, now) != peer.peer_id:
                return Refused(Ret.BAD_TOKEN, "Token错误: the token is unknown, expired or not this operator's", peer)
        sent = parse_timestamp(envelope.timestamp)
        assert sent is not None  # checked by RequestEnvelope.parse
        if abs(now - sent) > self.window:
            return Refused(Ret.BAD_ENVELOPE, f"POST参数不合法: TimeStamp {envelope.timestamp} is "
                           f"{int(abs((now - sent).total_seconds()))} s from our clock (Asia/Shanghai); "
                           f"at most {int(self.window.total_seconds())} s", peer)
        mark = fingerprint(envelope)
        if not self.directory.first_sight(peer, mark, sent + self.window + timedelta(seconds=1)):
            return Refused(Ret.BAD_ENVELOPE, "POST参数不合法: this envelope was already received (replay); "
                           "send a new TimeStamp/Seq", peer)
        outcome = self._decode(interface, envelope, peer, mark)
        if isinstance(outcome, Refused):
            self.directory.forget(peer, mark)
        return outcome

    def _decode(self, name: str, envelope: RequestEnvelope, peer: Peer, mark: bytes) -> Accepted | Refused:
        try:
            plaintext = peer.inbound.keys.decrypt(envelope.data)
        except CodecError as error:
            return Refused(Ret.BAD_DATA, f"请求的业务参数不合法: {error}", peer)
        try:
            value = wire.loads(plaintext)
        except wire.WireError as error:
            return Refused(Ret.BAD_DATA, f"请求的业务参数不合法: Data is {error}", peer)
        interface = self.served.get(name)
        if interface is None:
            return Refused(Ret.BAD_DATA, f"请求的业务参数不合法: no interface {name[:64]!r} is served here", peer)
        if peer.role not in interface.callers:
            return Refused(Ret.BAD_DATA, f"请求的业务参数不合法: {name} is not open to a {peer.role.value} peer", peer)
        try:
            request = interface.request.from_wire(value)
        except DataError as error:
            return Refused(Ret.BAD_DATA, f"请求的业务参数不合法: {error}", peer)
        return Accepted(peer, interface, request, envelope, mark)


def answer(peer: Peer | None, ret: int, msg: str, payload: Model | None = None, interface: str = "") -> ResponseEnvelope:
    """The response envelope, ``Data`` encrypted and ``Sig`` over Ret+Msg+Data with the key set the request
    used (the peer's inbound set); without a peer (unknown OperatorID, broken envelope) it is unsigned."""
    if peer is None:
        return ResponseEnvelope(int(ret), msg, "", "")
    keys = peer.inbound.keys
    data = ""
    if payload is not None:
        data = keys.encrypt(wire.dumps(payload.to_wire(peer.dialect.renames(interface))).encode("utf-8"))
    return ResponseEnvelope(int(ret), msg, data, keys.response_sig(int(ret), msg, data))
