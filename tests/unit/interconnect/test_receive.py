"""The receive pipeline on an in-memory directory: each check in the note's order, the Ret it gives,
and that a refused envelope leaves no sighting behind; the response builder's signature."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.envelope import RequestEnvelope, Ret
from adapters.interconnect.tcec.interfaces import INTERFACES, Interface, Role
from adapters.interconnect.tcec.models.codes import SuccStat
from adapters.interconnect.tcec.models.status import StationStatusRequest
from adapters.interconnect.tcec.models.token import TokenRequest, TokenResponse
from adapters.interconnect.tcec.peer import Credentials
from adapters.interconnect.tcec.receive import Accepted, Receiver, Refused, answer, fingerprint
from adapters.interconnect.tcec.routing import Handlers
from tests.unit.interconnect.pipeline_fakes import NOW, MemoryDirectory, body, envelope, make_peer

SERVED = {name: INTERFACES[name] for name in ("query_token", "query_station_status", "notification_stationStatus")}
STATUS = {"StationIDs": ["3101150001", "0012"]}


@pytest.fixture
def world() -> tuple[Receiver, MemoryDirectory]:
    directory = MemoryDirectory([make_peer()])
    directory.tokens["good-token"] = (directory.peers[0].peer_id, NOW + timedelta(hours=1))
    return Receiver(directory, SERVED, now=lambda: NOW), directory


def refused(outcome: object, ret: Ret, text: str) -> Refused:
    assert isinstance(outcome, Refused), outcome
    assert (outcome.ret, text in outcome.msg) == (ret, True), outcome.msg
    return outcome


def test_a_good_call_gives_the_peer_and_the_business_object(world: tuple[Receiver, MemoryDirectory]) -> None:
    receiver, directory = world
    peer = directory.peers[0]
    outcome = receiver.receive("query_station_status", body(envelope(peer, STATUS)), "Bearer good-token")
    assert isinstance(outcome, Accepted) and outcome.peer == peer
    assert outcome.request == StationStatusRequest(StationIDs=["3101150001", "0012"])
    assert len(directory.seen) == 1


def test_query_token_needs_no_bearer(world: tuple[Receiver, MemoryDirectory]) -> None:
    receiver, directory = world
    peer = directory.peers[0]
    data = {"OperatorID": peer.operator_id, "OperatorSecret": peer.inbound.operator_secret}
    outcome = receiver.receive("query_token", body(envelope(peer, data)), None)
    assert isinstance(outcome, Accepted) and isinstance(outcome.request, TokenRequest)


@pytest.mark.parametrize("mutate, text", [
    (lambda e: e.pop("Sig"), "missing Sig"),
    (lambda e: e.update(Data=""), "missing Data"),
    (lambda e: e.update(Seq=1), "Seq must be JSON strings"),
    (lambda e: e.update(TimeStamp="1709265600000"), "TimeStamp must be yyyyMMddHHmmss"),
    (lambda e: e.update(TimeStamp="20260230120000"), "TimeStamp must be yyyyMMddHHmmss"),
    (lambda e: e.update(Seq="12"), "Seq must be 4 digits"),
    (lambda e: e.update(Sig="XYZ"), "Sig must be 32 hexadecimal"),
    (lambda e: e.update(OperatorID="123"), "OperatorID must be 9"),
])
def test_a_malformed_envelope_is_4003_and_unsigned(world: tuple[Receiver, MemoryDirectory], mutate, text) -> None:
    receiver, directory = world
    value = envelope(directory.peers[0], STATUS)
    mutate(value)
    outcome = refused(receiver.receive("query_station_status", body(value), "Bearer good-token"), Ret.BAD_ENVELOPE,
                      text)
    assert outcome.peer is None and not directory.seen
    assert answer(outcome.peer, outcome.ret, outcome.msg).sig == ""


def test_a_body_that_is_not_a_json_object_is_4003(world: tuple[Receiver, MemoryDirectory]) -> None:
    receiver, _ = world
    for raw in (b"", b"not json", b"[]", b'"x"'):
        refused(receiver.receive("query_token", raw, None), Ret.BAD_ENVELOPE, "POST参数不合法")


def test_the_checks_run_in_the_notes_order(world: tuple[Receiver, MemoryDirectory]) -> None:
    """Each envelope below fails two checks; the earlier one answers."""
    receiver, directory = world
    peer = directory.peers[0]
    stale = NOW - timedelta(hours=2)
    forged = envelope(peer, STATUS, at=stale, sig="0" * 32)
    refused(receiver.receive("query_station_status", body(forged), None), Ret.BAD_SIG, "签名错误")  # Sig before token
    no_token = envelope(peer, STATUS, at=stale)
    refused(receiver.receive("query_station_status", body(no_token), None), Ret.BAD_TOKEN, "Bearer")  # token first
    bad_data = envelope(peer, None, at=stale, raw_data="AAAA")
    refused(receiver.receive("query_station_status", body(bad_data), "Bearer good-token"), Ret.BAD_ENVELOPE,
            "TimeStamp")  # time before decrypting
    unknown = envelope(peer, STATUS, operator_id="ZZZZZZZZZ", sig="0" * 32)
    refused(receiver.receive("query_station_status", body(unknown), None), Ret.BAD_DATA, "无此运营商")
    assert not directory.seen


def test_token_refusals(world: tuple[Receiver, MemoryDirectory]) -> None:
    receiver, directory = world
    other = make_peer("OTHER0001")
    directory.peers.append(other)
    directory.tokens["others-token"] = (other.peer_id, NOW + timedelta(hours=1))
    directory.tokens["old-token"] = (directory.peers[0].peer_id, NOW - timedelta(seconds=1))
    value = body(envelope(directory.peers[0], STATUS))
    for header in (None, "", "Basic good-token", "Bearer ", "Bearer others-token", "Bearer old-token",
                   "Bearer nonsense"):
        refused(receiver.receive("query_station_status", value, header), Ret.BAD_TOKEN, "Token错误")
    assert isinstance(receiver.receive("query_station_status", value, "bearer good-token"), Accepted)


def test_time_window_and_replay(world: tuple[Receiver, MemoryDirectory]) -> None:
    receiver, directory = world
    peer = directory.peers[0]
    for skew in (timedelta(minutes=5, seconds=1), -timedelta(minutes=5, seconds=1)):
        refused(receiver.receive("query_station_status", body(envelope(peer, STATUS, at=NOW + skew)),
                                 "Bearer good-token"), Ret.BAD_ENVELOPE, "TimeStamp")
    edge = body(envelope(peer, STATUS, at=NOW - timedelta(minutes=5)))
    assert isinstance(receiver.receive("query_station_status", edge, "Bearer good-token"), Accepted)
    refused(receiver.receive("query_station_status", edge, "Bearer good-token"), Ret.BAD_ENVELOPE, "replay")
    # the same TimeStamp and Seq with other Data (another process of the peer) is not a replay
    other = body(envelope(peer, {"StationIDs": ["x"]}, at=NOW - timedelta(minutes=5)))
    assert isinstance(receiver.receive("query_station_status", other, "Bearer good-token"), Accepted)


@pytest.mark.parametrize("raw_data, data, text", [
    ("@@@@", None, "not Base64"),
    ("AAAAAAAAAAAAAAAAAAAAAA==", None, "does not decrypt"),
    (None, "not json", "not JSON"),
    (None, {"StationIDs": [12]}, "StationIDs.0: ids are JSON strings"),
    (None, {"StationIDs": []}, "StationIDs: List should have at least 1"),
    (None, ["StationIDs"], "JSON object"),
])
def test_data_refusals_are_4004_and_leave_no_sighting(world: tuple[Receiver, MemoryDirectory], raw_data, data,
                                                      text) -> None:
    receiver, directory = world
    peer = directory.peers[0]
    if raw_data is None and isinstance(data, str):  # encrypted text that is not JSON
        raw_data = peer.inbound.keys.encrypt(data.encode())
    outcome = refused(receiver.receive("query_station_status", body(envelope(peer, data, raw_data=raw_data)),
                                       "Bearer good-token"), Ret.BAD_DATA, text)
    assert outcome.peer == peer and not directory.seen


def test_an_interface_not_served_or_not_open_to_the_role_is_4004(world: tuple[Receiver, MemoryDirectory]) -> None:
    receiver, directory = world
    peer = directory.peers[0]
    refused(receiver.receive("query_start_charge", body(envelope(peer, {})), "Bearer good-token"), Ret.BAD_DATA,
            "no interface 'query_start_charge' is served here")
    status = {"ConnectorStatusInfo": {"ConnectorID": "1", "Status": 1}}
    refused(receiver.receive("notification_stationStatus", body(envelope(peer, status)), "Bearer good-token"),
            Ret.BAD_DATA, "not open to a customer peer")
    assert not directory.seen


def test_two_tenants_linking_one_operator_are_told_apart_by_their_sig_secret() -> None:
    first, second = make_peer(), make_peer()
    directory = MemoryDirectory([first, second])
    directory.tokens["t2"] = (second.peer_id, NOW + timedelta(hours=1))
    receiver = Receiver(directory, SERVED, now=lambda: NOW)
    outcome = receiver.receive("query_station_status", body(envelope(second, STATUS)), "Bearer t2")
    assert isinstance(outcome, Accepted) and outcome.peer == second


def test_the_answer_is_signed_over_ret_msg_data_with_the_requests_key_set() -> None:
    peer = make_peer(credentials=Credentials("secret", "1234567890abcdef", "1234567890abcdef", "sig"))
    reply = TokenResponse(OperatorID=peer.operator_id, SuccStat=SuccStat.SUCCESS, AccessToken="abc",
                          TokenAvailableTime=7200)
    sent = answer(peer, Ret.OK, "", reply, "query_token")
    keys = peer.inbound.keys
    assert keys.verify_response(0, "", sent.data, sent.sig)
    assert TokenResponse.from_wire(wire.loads(keys.decrypt(sent.data))) == reply
    refusal = answer(peer, Ret.BAD_SIG, "签名错误")
    assert refusal.data == "" and keys.verify_response(4001, "签名错误", "", refusal.sig)
    assert set(sent.body()) == {"Ret", "Msg", "Data", "Sig"}


def test_the_fingerprint_covers_every_authenticated_field() -> None:
    peer = make_peer()
    base = RequestEnvelope.parse(body(envelope(peer, STATUS)))
    prints = {fingerprint(base)}
    for change in ({"seq": "0002"}, {"timestamp": "20260301120001"}, {"sig": "A" * 32}, {"data": base.data + "x"},
                   {"operator_id": "OTHER0001"}):
        prints.add(fingerprint(RequestEnvelope(**{**base.__dict__, **change})))
    assert len(prints) == 6


def test_the_handler_table_refuses_unknown_names_and_second_handlers() -> None:
    table = Handlers()
    table.handles("query_token")(lambda call: None)
    with pytest.raises(ValueError, match="already has a handler"):
        table.handles("query_token")(lambda call: None)
    with pytest.raises(ValueError, match="not a T/CEC 102 interface"):
        table.handles("notification_operationStats")  # a province's own interface, not the standard's
    custom = Interface("notification_operationStats", StationStatusRequest, TokenResponse, frozenset({Role.REGULATOR}))
    table.handles("notification_operationStats", custom)(lambda call: None)
    assert set(table) == {"query_token", "notification_operationStats"} and table["notification_operationStats"] is custom
