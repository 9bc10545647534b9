"""Two platforms linked by T/CEC on their own databases: query_token both ways, the token policy (same
token while young, never extended; refreshed at 80 %, once across processes), the client's retry on
4002 for idempotent calls only, secrets and tokens sealed or hashed at rest, peer configuration."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from adapters.interconnect.client import TcecClient, TcecRefused
from adapters.interconnect.store.peers import PeerConfigError
from adapters.interconnect.store.tokens import HeldTokens, token_hash
from adapters.interconnect.tcec.envelope import Ret
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.models.charge import StartChargeRequest
from adapters.interconnect.tcec.models.status import StationStatusRequest, StationStatusResponse
from adapters.interconnect.tcec.models.token import TokenRequest, TokenResponse
from tests.integration.interconnect_harness import A_ID, B_ID, BASE_URL, C_ID, Link, link, now  # noqa: F401

SEQ = B_ID + "000000000000000001"


def issued(link: Link) -> int:
    return link.a.store.issued.count(link.b_on_a.peer_id)


def test_the_two_platforms_exchange_query_token_both_ways(link: Link) -> None:
    token, lifetime = link.b_client().fetch_token()
    assert len(token) >= 40 and lifetime == 7200
    assert link.a.store.issued.owner(token, now()) == link.b_on_a.peer_id
    back, _ = link.a_client().fetch_token()
    assert link.b.store.issued.owner(back, now()) == link.a_on_b.peer_id
    assert back != token


def expiry(link: Link, token: str):
    with psycopg.connect(link.a.database_url) as conn:
        return conn.execute("SELECT expires_at FROM tcec_tokens_issued WHERE token_hash = %s",
                            (token_hash(token),)).fetchone()[0]


def test_asking_again_gives_the_same_token_without_extending_it(link: Link) -> None:
    client = link.b_client()
    first, left = client.fetch_token()
    count, expires = issued(link), expiry(link, first)
    second, left_again = client.fetch_token()
    assert second == first and left_again <= left and issued(link) == count
    assert expiry(link, first) == expires  # not moved on by the second request


def test_a_wrong_operator_secret_or_operator_id_is_a_business_failure(link: Link) -> None:
    client = link.b_client()
    count = issued(link)
    for request, reason in ((TokenRequest(OperatorID=B_ID, OperatorSecret="not the secret"), 2),
                            (TokenRequest(OperatorID=C_ID, OperatorSecret=link.b_on_a.inbound.operator_secret), 1)):
        answer = client.call("query_token", request)
        assert isinstance(answer, TokenResponse)
        assert (answer.SuccStat, answer.FailReason, answer.AccessToken) == (1, reason, "")
    assert issued(link) == count


def test_tokens_and_secrets_are_hashed_or_sealed_at_rest(link: Link) -> None:
    token = link.b_client().token()
    with psycopg.connect(link.a.database_url) as conn:
        rows = conn.execute("SELECT row_to_json(t)::text FROM tcec_peers t UNION ALL "
                            "SELECT row_to_json(t)::text FROM tcec_tokens_issued t").fetchall()
    with psycopg.connect(link.b.database_url) as conn:
        rows += conn.execute("SELECT row_to_json(t)::text FROM tcec_peers t UNION ALL "
                             "SELECT row_to_json(t)::text FROM tcec_tokens_held t").fetchall()
    text = "\n".join(r[0] for r in rows)
    secrets = [token, *link.b_on_a.inbound.as_dict().values(), *link.a_on_b.inbound.as_dict().values()]
    assert all(s not in text for s in secrets)
    assert "v1.a1." in text and "v1.b1." in text  # SecretBox's sealed form, each platform its own key


def test_a_served_call_carries_a_token_and_a_signed_answer(link: Link) -> None:
    answer = link.b_client().call("query_station_status", StationStatusRequest(StationIDs=["3101150001", "0012"]))
    assert isinstance(answer, StationStatusResponse) and answer.Total == 2
    assert [s.StationID for s in answer.StationStatusInfos] == ["3101150001", "0012"]
    assert link.a.calls[-1] == ("query_station_status", B_ID)


def test_on_4002_an_idempotent_call_is_resent_once_with_a_new_token(link: Link) -> None:
    client = link.b_client()
    old = client.token()
    with psycopg.connect(link.a.database_url) as conn:  # A forgets its tokens (say, a rotation)
        conn.execute("DELETE FROM tcec_tokens_issued")
    calls = len(link.a.calls)
    answer = client.call("query_station_status", StationStatusRequest(StationIDs=["1"]))
    assert isinstance(answer, StationStatusResponse)
    assert link.a.calls[calls:] == [("query_station_status", B_ID)]  # the refused first try ran nothing
    assert client.token() != old


def test_on_4002_a_start_is_not_resent_and_the_next_call_has_a_new_token(link: Link) -> None:
    client = link.b_client()
    client.token()
    with psycopg.connect(link.a.database_url) as conn:
        conn.execute("DELETE FROM tcec_tokens_issued")
    calls = len(link.a.calls)
    start = StartChargeRequest(StartChargeSeq=SEQ, ConnectorID="310115000101")
    with pytest.raises(TcecRefused) as refused:
        client.call("query_start_charge", start)
    assert (refused.value.ret, refused.value.authentic) == (Ret.BAD_TOKEN, True)
    assert link.a.calls[calls:] == []
    assert client.call("query_start_charge", start).SuccStat == 0  # the caller chose to send it again
    assert link.a.calls[calls:] == [("query_start_charge", B_ID)]


def test_a_held_token_is_refreshed_at_80_percent_of_its_lifetime(link: Link) -> None:
    client = link.b_client()
    client.token()

    def age(seconds_gone: int) -> None:
        with psycopg.connect(link.b.database_url) as conn:
            conn.execute("UPDATE tcec_tokens_held SET obtained_at = now() - make_interval(secs => %s), "
                         "expires_at = now() + make_interval(secs => %s)", (seconds_gone, 7200 - seconds_gone))

    def obtained() -> object:
        with psycopg.connect(link.b.database_url) as conn:
            return conn.execute("SELECT obtained_at FROM tcec_tokens_held").fetchone()[0]

    age(5700)  # 79 % of 7200 s gone: still used
    before = obtained()
    client.token()
    assert obtained() == before
    age(5800)  # 80.6 %: asked for again (A answers with a token of its own choosing: note A.4)
    before = obtained()
    client.token()
    assert obtained() > before + timedelta(seconds=5000)


def test_one_refresh_at_a_time_across_processes(link: Link) -> None:
    """Two 'processes' (each its own pool) need a token at once: one asks the peer, the other waits on the
    advisory lock and then finds the new token in the table."""
    peer = link.b.store.peers.get(link.b.tenant_id, A_ID)
    with psycopg.connect(link.b.database_url) as conn:
        conn.execute("DELETE FROM tcec_tokens_held")
    pools = [ConnectionPool(link.b.database_url, min_size=1, max_size=2, open=True) for _ in range(2)]
    entered, release, fetched, results = threading.Event(), threading.Event(), [], {}

    def fetch() -> tuple[str, int]:
        fetched.append(1)
        entered.set()
        assert release.wait(60)
        return f"token-{uuid.uuid4().hex}", 7200

    def worker(i: int) -> None:
        held = HeldTokens(pools[i], link.b.store.held.box)
        results[i] = held.token(peer.peer_id, fetch, now)

    try:
        first = threading.Thread(target=worker, args=(0,))
        first.start()
        assert entered.wait(60)
        second = threading.Thread(target=worker, args=(1,))
        second.start()
        with psycopg.connect(link.b.database_url) as conn:  # wait until the second waits on the lock
            for _ in range(6000):
                waiting = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                       ).fetchone()[0]
                if waiting:
                    break
                threading.Event().wait(0.01)
            assert waiting == 1
        release.set()
        first.join(60)
        second.join(60)
    finally:
        release.set()
        for pool in pools:
            pool.close()
    assert len(fetched) == 1 and results[0] == results[1]


def test_peer_configuration_is_checked(link: Link) -> None:
    peers, tenant = link.a.store.peers, link.a.tenant_id
    for kwargs, field in (({"our_operator_id": "short"}, "our_operator_id"),
                          ({"base_url": "ftp://x/evcs"}, "base_url"),
                          ({"base_url": "https://x/evcs?q=1"}, "base_url"),
                          ({"role": "friend"}, "role/dialect"),
                          ({"token_lifetime": 10}, "token_lifetime")):
        args = {"our_operator_id": A_ID, "base_url": BASE_URL, "role": Role.CUSTOMER, **kwargs}
        with pytest.raises(PeerConfigError) as refused:
            peers.configure(tenant, "DPLATFORM", **args)
        assert refused.value.details["field"] == field
    with pytest.raises(PeerConfigError, match="9 letters"):
        peers.configure(tenant, "D", our_operator_id=A_ID, base_url=BASE_URL, role=Role.CUSTOMER)
    # another tenant may link B too, with its own secrets; the same SigSecret would be ambiguous
    other = peers.configure(uuid.uuid4(), B_ID, our_operator_id="OTHERTEN1", base_url=BASE_URL, role="customer")
    assert other.inbound.sig_secret != link.b_on_a.inbound.sig_secret
    with pytest.raises(PeerConfigError, match="its own"):
        peers.configure(uuid.uuid4(), B_ID, our_operator_id="OTHERTEN2", base_url=BASE_URL, role="customer",
                        inbound=link.b_on_a.inbound)
    assert {p.tenant_id for p in peers.peers_by_operator(B_ID)} == {tenant, other.tenant_id}


def test_a_client_needs_the_credentials_the_peer_issued(link: Link) -> None:
    peer = link.a.store.peers.get(link.a.tenant_id, C_ID)
    with pytest.raises(ValueError, match="no outbound credentials"):
        TcecClient(peer, link.a.store.held, link.a.client)
