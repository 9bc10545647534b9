"""Each refusal of the T/CEC door, between two platforms on their own databases: the right Ret, a clear
Msg, the answer signed with the caller's key set when it is known, and nothing written (no token, no
sighting, no handler run)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from adapters.interconnect.service import Door, Services
from adapters.interconnect.store.directory import Store
from adapters.interconnect.store.tokens import token_hash
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.envelope import ResponseEnvelope, Ret, format_timestamp
from adapters.interconnect.tcec.peer import Credentials
from adapters.payments.config import SecretBox
from tests.integration.interconnect_harness import B_ID, Link, link, now  # noqa: F401 (the fixture)

STATUS = {"StationIDs": ["3101150001", "0012"]}


def envelope(keys_of: Credentials, data: Any, *, operator_id: str = B_ID, raw_data: str | None = None,
             at_offset: timedelta = timedelta(0), seq: str = "0001", sig: str | None = None) -> dict[str, str]:
    keys = keys_of.keys
    text = raw_data if raw_data is not None else keys.encrypt(wire.dumps(data).encode("utf-8"))
    timestamp = format_timestamp(now() + at_offset)
    return {"OperatorID": operator_id, "Data": text, "TimeStamp": timestamp, "Seq": seq,
            "Sig": sig or keys.request_sig(operator_id, text, timestamp, seq)}


def expired_token(link: Link) -> str:
    """A token A issued B that ran out a minute ago (written as IssuedTokens.issue writes one)."""
    token = f"expired-{uuid.uuid4().hex}"
    with psycopg.connect(link.a.database_url) as conn:
        conn.execute("INSERT INTO tcec_tokens_issued (token_hash, peer_id, sealed, issued_at, expires_at) "
                     "VALUES (%s, %s, 'sealed', now() - interval '2 hours 1 minute', now() - interval '1 minute')",
                     (token_hash(token), link.b_on_a.peer_id))
    return token


@pytest.fixture
def token(link: Link) -> str:
    """B's valid token on A (from A's query_token through B's client)."""
    return link.b_client().token()


def expect(answer: ResponseEnvelope, ret: Ret, text: str, signed_by: Credentials | None) -> None:
    assert (answer.ret, answer.data) == (int(ret), ""), answer
    assert text in answer.msg, answer.msg
    if signed_by is None:
        assert answer.sig == ""
    else:
        assert signed_by.keys.verify_response(answer.ret, answer.msg, answer.data, answer.sig)


Case = Callable[[Link, str], tuple[str, dict[str, Any] | bytes, str | None]]

CASES: dict[str, tuple[Case, Ret, str, bool]] = {
    "forged Sig": (lambda l, t: ("query_station_status", envelope(l.b_on_a.inbound, STATUS, sig="A" * 32), t),
                   Ret.BAD_SIG, "签名错误", True),
    "signed with another peer's secret": (
        lambda l, t: ("query_station_status", envelope(l.c_on_a.inbound, STATUS), t), Ret.BAD_SIG, "签名错误", True),
    "no token": (lambda l, t: ("query_station_status", envelope(l.b_on_a.inbound, STATUS), None),
                 Ret.BAD_TOKEN, "Bearer", True),
    "expired token": (lambda l, t: ("query_station_status", envelope(l.b_on_a.inbound, STATUS), expired_token(l)),
                      Ret.BAD_TOKEN, "expired", True),
    "token of another peer": (lambda l, t: ("query_station_status", envelope(l.b_on_a.inbound, STATUS),
                                            l.a.store.issued.issue(l.c_on_a.peer_id, 7200, now())[0]),
                              Ret.BAD_TOKEN, "not this operator's", True),
    "unknown OperatorID": (lambda l, t: ("query_station_status", envelope(l.b_on_a.inbound, STATUS,
                                                                          operator_id="ZZZZZZZZZ"), t),
                           Ret.BAD_DATA, "无此运营商", False),
    "stale timestamp": (lambda l, t: ("query_station_status", envelope(l.b_on_a.inbound, STATUS,
                                                                       at_offset=-timedelta(minutes=6)), t),
                        Ret.BAD_ENVELOPE, "TimeStamp", True),
    "timestamp from the future": (lambda l, t: ("query_station_status", envelope(l.b_on_a.inbound, STATUS,
                                                                                 at_offset=timedelta(minutes=6)), t),
                                  Ret.BAD_ENVELOPE, "TimeStamp", True),
    "missing envelope field": (lambda l, t: ("query_station_status", {
        k: v for k, v in envelope(l.b_on_a.inbound, STATUS).items() if k != "Seq"}, t),
        Ret.BAD_ENVELOPE, "missing Seq", False),
    "body not JSON": (lambda l, t: ("query_station_status", b"OperatorID=BPLATFORM", t), Ret.BAD_ENVELOPE,
                      "not a JSON envelope", False),
    "Data that does not decrypt": (
        lambda l, t: ("query_station_status", envelope(l.b_on_a.inbound, None, raw_data=Credentials.generate()
                                                       .keys.encrypt(b'{"StationIDs":["1"]}')), t),
        Ret.BAD_DATA, "does not decrypt", True),
    "Data not Base64": (lambda l, t: ("query_station_status", envelope(l.b_on_a.inbound, None, raw_data="%%%%"), t),
                        Ret.BAD_DATA, "not Base64", True),
    "Data not JSON": (lambda l, t: ("query_station_status", envelope(
        l.b_on_a.inbound, None, raw_data=l.b_on_a.inbound.keys.encrypt("站点 3101150001".encode())), t),
        Ret.BAD_DATA, "not JSON", True),
    "invalid business field": (lambda l, t: ("query_station_status", envelope(
        l.b_on_a.inbound, {"StationIDs": [3101150001]}), t), Ret.BAD_DATA, "StationIDs.0: ids are JSON strings", True),
    "too many stations": (lambda l, t: ("query_station_status", envelope(
        l.b_on_a.inbound, {"StationIDs": [str(i) for i in range(51)]}), t), Ret.BAD_DATA, "at most 50", True),
    "unknown interface": (lambda l, t: ("query_weather", envelope(l.b_on_a.inbound, STATUS), t), Ret.BAD_DATA,
                          "no interface 'query_weather' is served here", True),
    "interface not open to a customer": (
        lambda l, t: ("notification_stationStatus", envelope(l.b_on_a.inbound, {"ConnectorStatusInfo": {
            "ConnectorID": "1", "Status": 1}}), t), Ret.BAD_DATA, "not open to a customer peer", True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_refusal_has_its_ret_and_writes_nothing(link: Link, token: str, case: str) -> None:
    build, ret, text, signed = CASES[case]
    interface, body, bearer = build(link, token)
    before, calls = link.a.counts(), list(link.a.calls)
    answer = link.a.post(interface, body, bearer)
    expect(answer, ret, text, link.b_on_a.inbound if signed else None)
    assert link.a.counts() == before
    assert link.a.calls == calls


def test_a_replayed_envelope_is_refused_and_its_first_copy_served_once(link: Link, token: str) -> None:
    sent = envelope(link.b_on_a.inbound, STATUS, seq="0042")
    first = link.a.post("query_station_status", sent, token)
    assert first.ret == 0 and link.b_on_a.inbound.keys.verify_response(0, "", first.data, first.sig)
    before, calls = link.a.counts(), list(link.a.calls)
    expect(link.a.post("query_station_status", sent, token), Ret.BAD_ENVELOPE, "replay", link.b_on_a.inbound)
    assert link.a.counts() == before and link.a.calls == calls
    again = envelope(link.b_on_a.inbound, STATUS, seq="0043")  # the same call, a new envelope: served
    assert link.a.post("query_station_status", again, token).ret == 0


def test_a_refused_envelope_may_be_sent_again_once_its_fault_is_fixed(link: Link, token: str) -> None:
    """A refusal records no sighting: the very envelope refused for a token is served with a good token."""
    sent = envelope(link.b_on_a.inbound, STATUS, seq="0077")
    expect(link.a.post("query_station_status", sent, "wrong"), Ret.BAD_TOKEN, "Token错误", link.b_on_a.inbound)
    assert link.a.post("query_station_status", sent, token).ret == 0


def test_mime_wrapped_data_from_a_java_peer_is_served(link: Link, token: str) -> None:
    keys = link.b_on_a.inbound.keys
    flat = keys.encrypt(wire.dumps({"StationIDs": [f"S{i:019d}" for i in range(8)]}).encode())
    wrapped = "\n".join(flat[i:i + 76] for i in range(0, len(flat), 76))
    answer = link.a.post("query_station_status", envelope(link.b_on_a.inbound, None, raw_data=wrapped), token)
    assert answer.ret == 0, answer.msg
    assert wire.loads(keys.decrypt(answer.data))["Total"] == 8


def test_a_body_over_the_cap_is_refused_before_the_pipeline(link: Link, token: str) -> None:
    before = link.a.counts()
    response = link.a.client.post("/evcs/v1/query_station_status", content=b"{" + b" " * (65 * 1024) + b"}",
                                  headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 413 and response.json()["code"] == "body_too_large"
    assert link.a.counts() == before


@pytest.mark.parametrize("interface, data, ret, text", [
    ("query_equip_auth", {"EquipAuthSeq": B_ID + "0" * 18, "ConnectorID": "9"}, Ret.BAD_DATA, "no connector 9"),
    ("query_station_stats", {"StationID": "1", "StartTime": "2026-01-01", "EndTime": "2026-01-02"},
     Ret.SYSTEM_ERROR, "系统错误"),
])
def test_a_handlers_refusal_or_failure_is_signed_and_its_envelope_let_go(link: Link, token: str, interface: str,
                                                                        data: dict[str, str], ret: Ret,
                                                                        text: str) -> None:
    sent = envelope(link.b_on_a.inbound, data, seq="0101")
    before, calls = link.a.counts(), len(link.a.calls)
    answer = link.a.post(interface, sent, token)
    expect(answer, ret, text, link.b_on_a.inbound)
    assert "statistics view" not in answer.msg and link.a.counts() == before  # the exception is logged, not sent
    assert link.a.calls[calls:] == [(interface, B_ID)]
    expect(link.a.post(interface, sent, token), ret, text, link.b_on_a.inbound)  # not taken for a replay


def test_secrets_no_configured_key_opens_answer_500_unsigned(link: Link) -> None:
    wrong_keys = Store(link.a.store.pool, SecretBox.from_setting(SecretBox.generate_setting("zz")))
    door = Door(Services(wrong_keys), link.a.door.handlers)
    before = link.a.counts()
    answer = door.answer("query_station_status", wire.dumps(envelope(link.b_on_a.inbound, STATUS)).encode(), None)
    assert (answer.ret, answer.sig, answer.data) == (500, "", "")
    assert link.a.counts() == before
