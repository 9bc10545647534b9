"""``TcecClient``: calling one peer, as the protocol wants it, over httpx.

A call encrypts the request with the peer's outbound key set (what the peer issued us), signs the
envelope, posts it to ``{base_url}/{interface}`` with the Bearer token, then checks the answer's
``Sig`` over Ret+Msg+Data with the **same** key set before believing anything in it, decrypts
``Data`` and validates it against the interface's answer model (either spelling accepted).

Tokens come from :class:`~adapters.interconnect.store.tokens.HeldTokens` (one per peer, shared by
every process, refreshed at 80 % of its lifetime, one refresh at a time). On Ret 4002 the token is
refreshed and the call is sent once more **only if it is idempotent**: never ``query_start_charge``
or ``query_stop_charge``, which a peer may have acted on; those raise, and the caller decides
(typically by asking ``query_equip_charge_status`` under the same ``StartChargeSeq``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import httpx

from adapters.interconnect.store.tokens import HeldTokens
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.codec import CodecError
from adapters.interconnect.tcec.envelope import (EnvelopeError, RequestEnvelope, ResponseEnvelope, Ret, SeqCounter,
                                                 format_timestamp)
from adapters.interconnect.tcec.interfaces import INTERFACES, TOKEN, Interface
from adapters.interconnect.tcec.models.base import DataError, Model
from adapters.interconnect.tcec.models.codes import SuccStat
from adapters.interconnect.tcec.models.token import TokenRequest, TokenResponse
from adapters.interconnect.tcec.peer import Peer

log = logging.getLogger("chargeledger.interconnect.client")
MEDIA_TYPE = "application/json;charset=utf-8"
MIN_LIFETIME = 60  # seconds: a peer announcing less (or 0) is asked again after this


class TcecError(Exception):
    """A call that did not give a trustworthy answer (transport, a bad Sig, undecodable Data)."""


class TcecRefused(TcecError):
    """The peer answered with ``Ret`` other than 0 (``authentic``: its Sig checked out)."""

    def __init__(self, interface: str, ret: int, msg: str, authentic: bool) -> None:
        super().__init__(f"{interface}: Ret {ret} {msg!r}" + ("" if authentic else " (unsigned or badly signed)"))
        self.interface, self.ret, self.msg, self.authentic = interface, ret, msg, authentic


def http_client(timeout: float = 30.0) -> httpx.Client:
    """The HTTP client for peers: 10 s to connect, ``timeout`` for an answer, no redirects followed."""
    return httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), follow_redirects=False)


_COUNTERS: dict[UUID, SeqCounter] = {}
_COUNTERS_LOCK = threading.Lock()


def seq_counter(peer_id: UUID) -> SeqCounter:
    """The process's one Seq counter per peer, shared by every client of that peer (see SeqCounter)."""
    with _COUNTERS_LOCK:
        return _COUNTERS.setdefault(peer_id, SeqCounter())


class TcecClient:
    """Calls to one peer (``peer.outbound`` must be set). ``http`` is any ``httpx.Client``, its timeouts
    its own (:func:`http_client`; the tests give the peer's TestClient); redirects are not followed."""

    def __init__(self, peer: Peer, tokens: HeldTokens, http: httpx.Client, *,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        if peer.outbound is None:
            raise ValueError(f"peer {peer.operator_id} has no outbound credentials yet (what it issued us)")
        self.peer, self.tokens, self.http, self.now = peer, tokens, http, now
        self.keys = peer.outbound.keys
        self.seq = seq_counter(peer.peer_id)

    # ---- calls ----------------------------------------------------------------------------------------
    def call(self, interface: str | Interface, request: Model) -> Model:
        """The peer's answer object for ``request``, or :class:`TcecRefused` / :class:`TcecError`."""
        iface = interface if isinstance(interface, Interface) else INTERFACES[interface]
        if not isinstance(request, iface.request):
            raise TypeError(f"{iface.name} takes a {iface.request.__name__}")
        if iface.name == TOKEN:
            return self._exchange(iface, request, None)
        token = self.token()
        try:
            return self._exchange(iface, request, token)
        except TcecRefused as refused:
            if refused.ret != Ret.BAD_TOKEN:
                raise
            if not iface.idempotent:  # the peer may have acted on it: never resent; the next call refreshes
                self.tokens.discard(self.peer.peer_id, token)
                log.warning("T/CEC %s to %s: token refused; not resent (not idempotent)", iface.name,
                            self.peer.operator_id)
                raise
            return self._exchange(iface, request, self.token(stale=token))

    def token(self, stale: str | None = None) -> str:
        return self.tokens.token(self.peer.peer_id, self.fetch_token, self.now, stale=stale)

    def fetch_token(self) -> tuple[str, int]:
        """A new token from the peer's ``query_token`` (token, lifetime in s)."""
        outbound = self.peer.outbound
        assert outbound is not None
        answer = self._exchange(INTERFACES[TOKEN], TokenRequest(OperatorID=self.peer.our_operator_id,
                                                                OperatorSecret=outbound.operator_secret), None)
        assert isinstance(answer, TokenResponse)
        if answer.SuccStat != SuccStat.SUCCESS or not answer.AccessToken:
            raise TcecError(f"query_token to {self.peer.operator_id} failed: FailReason {answer.FailReason}")
        return answer.AccessToken, max(MIN_LIFETIME, answer.TokenAvailableTime)

    # ---- one exchange ---------------------------------------------------------------------------------
    def envelope(self, interface: str, request: Model) -> RequestEnvelope:
        """The signed, encrypted envelope of ``request`` (in the peer's dialect)."""
        data = self.keys.encrypt(wire.dumps(request.to_wire(self.peer.dialect.renames(interface))).encode("utf-8"))
        timestamp = format_timestamp(self.now())
        seq = self.seq.next(timestamp)
        operator_id = self.peer.our_operator_id
        return RequestEnvelope(operator_id, data, timestamp, seq, self.keys.request_sig(operator_id, data,
                                                                                         timestamp, seq))

    def _exchange(self, iface: Interface, request: Model, token: str | None) -> Model:
        headers = {"Content-Type": MEDIA_TYPE}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = wire.dumps(self.envelope(iface.name, request).body()).encode("utf-8")
        try:
            response = self.http.post(self.peer.url(iface.name), content=body, headers=headers,
                                      follow_redirects=False)
        except httpx.HTTPError as error:
            raise TcecError(f"{iface.name} to {self.peer.operator_id}: {type(error).__name__}: {error}") from None
        if response.status_code != 200:
            raise TcecError(f"{iface.name} to {self.peer.operator_id}: HTTP {response.status_code}")
        return self._read(iface, response.content)

    def _read(self, iface: Interface, content: bytes) -> Model:
        try:
            answer = ResponseEnvelope.parse(content)
        except EnvelopeError as error:
            raise TcecError(f"{iface.name} to {self.peer.operator_id}: {error}") from None
        authentic = bool(answer.sig) and self.keys.verify_response(answer.ret, answer.msg, answer.data, answer.sig)
        if answer.ret != Ret.OK:
            raise TcecRefused(iface.name, answer.ret, answer.msg, authentic)
        if not authentic:
            raise TcecError(f"{iface.name} to {self.peer.operator_id}: the answer's Sig does not match")
        try:
            value: Any = wire.loads(self.keys.decrypt(answer.data))
            return iface.response.from_wire(value)
        except (CodecError, wire.WireError, DataError) as error:
            raise TcecError(f"{iface.name} to {self.peer.operator_id}: answer Data: {error}") from None
