"""Pulling an infrastructure peer's catalogue into ``store/peer_catalogue.py``: its stations, its connectors'
statuses and their business policies, with the peer's own ``query_*`` interfaces (``TcecClient``).

One pull (:class:`CataloguePull`) of one peer:

1. ``query_stations_info``, page by page (``PageSize`` 100), for the stations changed since the start of
   the last **complete** pull, less :data:`OVERLAP` (our clock and the peer's differ, and a station
   changed while we paged may have moved to a page already read: asking a little earlier costs a few
   stations twice, never one missed); the first pull asks for everything. The pull is complete when
   every page arrived; only then does the next one ask from its start.
2. ``query_station_status`` for every station of the peer we know, at most 50 a call.
3. ``query_equip_business_policy`` for the connectors of the stations just received (a changed station may
   have a changed tariff: A says so of its own), and for those never asked, refused last time, or asked
   more than :data:`POLICY_AGE` ago (a peer need not count a tariff change as a station change).
   ``EquipBizSeq`` is our OperatorID and 18 random digits.

What arrives is kept as it arrives: a page, a chunk of statuses or a policy refused (``TcecRefused``), or
untrustworthy or invalid (``TcecError``: a bad Sig, Data that does not fit the model) is reported and
skipped, and what came before it stays. After :data:`GIVE_UP` failures in a row the pull stops (a peer that
is down would otherwise cost a timeout per connector). :class:`Pulls` runs a pull of every enabled
infrastructure peer every interval, for the outbox role; one peer's failure is logged and reported, and the
others are pulled all the same.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import httpx

from adapters.interconnect.client import TcecClient, TcecError, http_client
from adapters.interconnect.store.directory import Store
from adapters.interconnect.store.peer_catalogue import PeerCatalogue
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.models.codes import SuccStat
from adapters.interconnect.tcec.models.policy import (
    BusinessPolicyRequest,
    BusinessPolicyResponse,
)
from adapters.interconnect.tcec.models.stations import (
    StationsInfoRequest,
    StationsInfoResponse,
)
from adapters.interconnect.tcec.models.status import (
    MAX_STATIONS,
    StationStatusRequest,
    StationStatusResponse,
)
from adapters.interconnect.tcec.peer import Peer
from domain.clock import utcnow

log = logging.getLogger("chargeledger.interconnect.catalogue")
PAGE_SIZE = 100
OVERLAP = timedelta(minutes=5)  # the envelope's own tolerance between two platforms' clocks
POLICY_AGE = timedelta(hours=24)
GIVE_UP = 5  # failed calls in a row
MAX_PAGES = 10_000


class GiveUp(Exception):
    """Too many failures in a row: the rest of the pull is not tried."""


@dataclass
class PullReport:
    operator_id: str
    complete: bool = False  # every page of stations arrived
    stations: int = 0  # received (changed since the last complete pull)
    statuses: int = 0  # connector statuses kept
    policies: int = 0  # policies received
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        head = (f"{self.operator_id}: {'complete' if self.complete else 'INCOMPLETE'}, {self.stations} stations, "
                f"{self.statuses} statuses, {self.policies} policies, {len(self.errors)} errors")
        return "\n  ".join([head, *self.errors])


def biz_seq(our_operator_id: str) -> str:
    return f"{our_operator_id}{secrets.randbelow(10 ** 18):018d}"


class CataloguePull:
    """One pull of ``client.peer`` (see the module)."""

    def __init__(self, catalogue: PeerCatalogue, client: TcecClient, *, page_size: int = PAGE_SIZE,
                 overlap: timedelta = OVERLAP, policy_age: timedelta = POLICY_AGE,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.catalogue, self.client, self.clock = catalogue, client, clock
        self.page_size, self.overlap, self.policy_age = page_size, overlap, policy_age
        self.peer: Peer = client.peer
        self.failures = 0

    def run(self) -> PullReport:
        report = PullReport(self.peer.operator_id)
        started = self.clock()
        received: list[str] = []
        try:
            report.complete = self._stations(report, received)
            self._statuses(report)
            self._policies(report, received, started)
        except GiveUp:
            report.errors.append(f"gave up after {GIVE_UP} failed calls in a row")
        self.catalogue.finished(self.peer.peer_id, started, report.complete, report.summary(), self.clock())
        log.log(logging.INFO if not report.errors else logging.WARNING, "T/CEC catalogue pull %s", report.summary())
        return report

    def _call(self, report: PullReport, what: str, interface: str, request: object) -> object | None:
        """The answer, or None with the failure reported (GiveUp after too many in a row)."""
        try:
            answer = self.client.call(interface, request)  # type: ignore[arg-type]
        except TcecError as error:  # TcecRefused included: the peer's refusal, or an answer we cannot trust
            report.errors.append(f"{what}: {error}"[:500])
            self.failures += 1
            if self.failures >= GIVE_UP:
                raise GiveUp from None
            return None
        self.failures = 0
        return answer

    def _stations(self, report: PullReport, received: list[str]) -> bool:
        since = self.catalogue.complete_from(self.peer.peer_id)
        last = None if since is None else since - self.overlap
        page = 1
        while page <= MAX_PAGES:
            answer = self._call(report, f"query_stations_info page {page}", "query_stations_info",
                                StationsInfoRequest(LastQueryTime=last, PageNo=page, PageSize=self.page_size))
            if not isinstance(answer, StationsInfoResponse):
                return False
            if answer.PageNo != page:
                report.errors.append(f"query_stations_info page {page}: the peer answered page {answer.PageNo}")
                return False
            self.catalogue.save_stations(self.peer.peer_id, answer.StationInfos, self.clock())
            received.extend(s.StationID for s in answer.StationInfos)
            report.stations += len(answer.StationInfos)
            if page >= answer.PageCount or not answer.StationInfos:
                return True
            page += 1
        report.errors.append(f"query_stations_info: more than {MAX_PAGES} pages")
        return False

    def _statuses(self, report: PullReport) -> None:
        for chunk in _chunks(self.catalogue.station_ids(self.peer.peer_id), MAX_STATIONS):
            sent = self.clock()  # the statuses are at least this new (store/peer_catalogue.py)
            answer = self._call(report, f"query_station_status {chunk[0]}..", "query_station_status",
                                StationStatusRequest(StationIDs=chunk))
            if not isinstance(answer, StationStatusResponse):
                continue
            asked = set(chunk)
            statuses = [(c.ConnectorID, int(c.Status)) for s in answer.StationStatusInfos if s.StationID in asked
                        for c in s.ConnectorStatusInfos]
            report.statuses += self.catalogue.save_status(self.peer.peer_id, statuses, sent)

    def _policies(self, report: PullReport, received: list[str], started: datetime) -> None:
        for connector_id in self.catalogue.policies_due(self.peer.peer_id, received, started - self.policy_age):
            request = BusinessPolicyRequest(EquipBizSeq=biz_seq(self.peer.our_operator_id), ConnectorID=connector_id)
            answer = self._call(report, f"query_equip_business_policy {connector_id}",
                                "query_equip_business_policy", request)
            if not isinstance(answer, BusinessPolicyResponse):
                self.catalogue.save_policy(self.peer.peer_id, connector_id, None, report.errors[-1][:500],
                                           self.clock())
            elif answer.ConnectorID != connector_id or answer.EquipBizSeq != request.EquipBizSeq:
                error = f"query_equip_business_policy {connector_id}: the answer is for {answer.ConnectorID}"
                report.errors.append(error)
                self.catalogue.save_policy(self.peer.peer_id, connector_id, None, error, self.clock())
            elif answer.SuccStat != SuccStat.SUCCESS or not answer.PolicyInfos:
                self.catalogue.save_policy(self.peer.peer_id, connector_id, None,
                                           f"no policy: SuccStat {int(answer.SuccStat)}, FailReason "
                                           f"{answer.FailReason}", self.clock())
            else:
                self.catalogue.save_policy(self.peer.peer_id, connector_id, answer.PolicyInfos, None, self.clock())
                report.policies += 1


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def pullable(peer: Peer) -> str | None:
    """Why ``peer``'s catalogue cannot be pulled, or None."""
    if peer.role != Role.INFRASTRUCTURE:
        return f"{peer.operator_id} is a {peer.role.value} peer: only an infrastructure peer has piles for our drivers"
    if not peer.enabled:
        return f"{peer.operator_id} is disabled"
    if peer.outbound is None:
        return f"{peer.operator_id} has not issued us its secrets yet (chargeledger peers outbound)"
    return None


def pull(store: Store, peer: Peer, http: httpx.Client, **options: object) -> PullReport:
    """One pull of ``peer`` (which must be :func:`pullable`) through ``http``."""
    return CataloguePull(store.peer_catalogue, TcecClient(peer, store.held, http), **options).run()  # type: ignore[arg-type]


class Pulls:
    """Every enabled infrastructure peer of every tenant, pulled every ``every`` (a lease in
    ``tcec_peer_pulls`` makes it once per interval across processes)."""

    def __init__(self, store: Store, every: timedelta, *, http_for: Callable[[Peer], httpx.Client] | None = None,
                 clock: Callable[[], datetime] = utcnow, **options: object) -> None:
        self.store, self.every, self.clock, self.options = store, every, clock, options
        self._http = None if http_for is not None else http_client()
        self.http_for = http_for or (lambda peer: self._http)

    def step(self, now: datetime | None = None) -> list[PullReport]:
        now = now or self.clock()
        reports = []
        for peer_id in self.store.peer_catalogue.infrastructure_peers():
            report = self._pull(peer_id, now)
            if report is not None:
                reports.append(report)
        return reports

    def _pull(self, peer_id: UUID, now: datetime) -> PullReport | None:
        try:
            peer = self.store.peers.by_id(peer_id)
            if pullable(peer) is not None or not self.store.peer_catalogue.claim(peer_id, now, self.every):
                return None
            return pull(self.store, peer, self.http_for(peer), clock=self.clock, **self.options)
        except Exception as error:  # noqa: BLE001 - one peer's failure must not stop the others' pulls
            log.exception("T/CEC catalogue pull of peer %s failed", peer_id)
            return PullReport(str(peer_id), errors=[f"{type(error).__name__}: {error}"[:500]])

    def run_forever(self, stop: threading.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - the database away: the next round tries again
                log.exception("T/CEC catalogue pulls failed; trying again")
            stop.wait(interval)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
